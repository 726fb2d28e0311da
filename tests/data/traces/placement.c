/* placement: where Linux puts mappings when the program lets it choose (run under
 * `setarch -R`, so without randomisation: see placement.trace). mmap without a hint
 * (top-down below mmap_base, below ld.so and the vDSO), 2 MiB multiples (THP-aligned),
 * a hole left by munmap and filled again, a hint that fits and one that does not, a file
 * mapping, mremap growing and moving, shmat without an address, brk growth.
 * `placement FILE` copies /proc/self/maps to FILE just before it exits. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#define PG 4096
#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)

static void dump(const char *out)
{
	static char buf[1 << 16];
	ssize_t n, total = 0;
	int in = open("/proc/self/maps", O_RDONLY);
	while ((n = read(in, buf + total, sizeof(buf) - 1 - total)) > 0)
		total += n;
	close(in);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	write(fd, buf, total);
	close(fd);
}

int main(int argc, char **argv)
{
	char *a = mmap(NULL, 3 * PG, RW, ANON, -1, 0);
	char *b = mmap(NULL, 5 * PG, PROT_READ, ANON, -1, 0);
	char *h = mmap(NULL, 2 << 20, RW, ANON, -1, 0);		/* THP-aligned */
	char *h2 = mmap(NULL, 6 << 20, PROT_READ, ANON, -1, 0);	/* THP-aligned */
	char *c = mmap(NULL, 16 * PG, RW, ANON, -1, 0);
	munmap(c + 4 * PG, 4 * PG);					/* a hole */
	char *d = mmap(NULL, 2 * PG, RW, ANON, -1, 0);		/* top-down: highest gap */
	char *e = mmap(NULL, 4 * PG, RW, ANON, -1, 0);		/* fills the hole? */
	mmap((void *)0x200000000, PG, RW, ANON, -1, 0);		/* a hint that fits */
	mmap(a, PG, RW, ANON, -1, 0);				/* a hint that does not */
	mmap((void *)0x200000123, PG, RW, ANON, -1, 0);		/* an unaligned hint */
	int fd = open("/etc/passwd", O_RDONLY);
	mmap(NULL, 2 * PG, PROT_READ, MAP_PRIVATE, fd, 0);
	mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	char *g = mmap(NULL, 2 * PG, RW, ANON, -1, 0);
	mmap(NULL, PG, PROT_NONE, ANON, -1, 0);			/* fences g in */
	mremap(g, 2 * PG, 8 * PG, MREMAP_MAYMOVE);			/* moves: placed anew */
	mremap(e, 4 * PG, 4 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
	int id = shmget(IPC_PRIVATE, 3 * PG, IPC_CREAT | 0600);
	shmat(id, NULL, 0);
	shmctl(id, IPC_RMID, NULL);
	void *m = malloc(200000);					/* brk grows */
	free(m);
	void *big = malloc(1 << 20);					/* mmap'd by malloc */
	free(big);
	(void)b; (void)h; (void)h2; (void)d;
	if (argc > 1)
		dump(argv[1]);
	return 0;
}
