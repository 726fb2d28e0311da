/* malloc_mix: small blocks from the brk heap, large blocks from mmap, then explicit
 * mprotect (split and re-merge), mremap (grow, moving; shrink in place), madvise, mlock
 * and two calls that fail (an mprotect of an unmapped page, an impossible mmap).
 * `malloc_mix FILE` also copies its /proc/self/maps to FILE just before it exits. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

#define PG 4096

/* Copy /proc/self/maps to `out` with raw system calls (no malloc, no mmap), so that the
 * real layout can be compared with the replay's. */
static void dump_maps(const char *out)
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
	char *small[256];
	for (int i = 0; i < 256; i++) {		/* 256 KiB from brk: the heap grows */
		small[i] = malloc(1000);
		memset(small[i], i, 1000);
	}
	char *big = malloc(1 << 20);		/* above M_MMAP_THRESHOLD: mmap */
	memset(big, 1, 1 << 20);
	char *big2 = malloc(300 * 1024);
	for (int i = 0; i < 256; i++)		/* top chunk over M_TRIM_THRESHOLD: brk shrinks */
		free(small[i]);
	free(big);				/* munmap */
	free(big2);

	char *p = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(p, 2, 16 * PG);
	mprotect(p + 4 * PG, 4 * PG, PROT_READ);		/* splits into three VMAs */
	mprotect(p + 4 * PG, 4 * PG, PROT_READ | PROT_WRITE);	/* merges back into one */
	char *q = mremap(p, 16 * PG, 64 * PG, MREMAP_MAYMOVE);	/* no room above: moves */
	q = mremap(q, 64 * PG, 32 * PG, 0);			/* shrinks in place */
	madvise(q, 8 * PG, MADV_DONTNEED);
	mlock(q, 4 * PG);
	munlock(q, 4 * PG);
	munmap(q, 32 * PG);

	mprotect((void *)0x10000, PG, PROT_READ);		/* nothing there: ENOMEM */
	mmap(NULL, (size_t)1 << 46, PROT_READ | PROT_WRITE,	/* 64 TiB: ENOMEM */
	     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (argc > 1)	/* the layout as the process exits */
		dump_maps(argv[1]);
	return 0;
}
