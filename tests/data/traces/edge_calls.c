/* edge_calls: memory system calls at the edges of their rules, each recorded with the
 * result Linux gave (see edge_calls.trace): EEXIST, EPERM, EINVAL, ENOMEM failures, holes,
 * partial mprotect, shared anonymous and memfd mappings, mremap in place and FIXED,
 * madvise, mlock2 ONFAULT, mlockall MCL_FUTURE, brk below the heap, and System V shm
 * attach rules (SHM_RND, overlap, shmdt of a non-segment, IPC_RMID while attached).
 * `edge_calls FILE` also copies its /proc/self/maps to FILE just before it exits.
 * Recorded as an ordinary user (setpriv), so that root's exemptions do not apply. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PG 4096
#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)

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
	/* mmap */
	char *a = mmap(NULL, 8 * PG, RW, ANON, -1, 0);
	a[0] = 1;
	mmap(a + 2 * PG, PG, RW, ANON | MAP_FIXED_NOREPLACE, -1, 0);	/* EEXIST */
	mmap((void *)0, PG, RW, ANON | MAP_FIXED, -1, 0);		/* EPERM: mmap_min_addr */
	mmap(NULL, 0, RW, ANON, -1, 0);					/* EINVAL */
	mmap(a + 1, PG, RW, ANON | MAP_FIXED, -1, 0);			/* EINVAL */

	/* munmap and mprotect around a hole */
	munmap(a + 1, PG);				/* EINVAL: unaligned */
	munmap(a + 3 * PG, PG);				/* punches a hole */
	munmap(a + 3 * PG, PG);				/* nothing there: still 0 */
	mprotect(a, 8 * PG, PROT_READ);			/* ENOMEM at the hole, [a, a+3) changed */
	mprotect(a + 1, PG, PROT_READ);			/* EINVAL */
	mprotect(a, 0, PROT_READ);			/* 0 */
	mprotect(a + 4 * PG, 4 * PG, PROT_READ);	/* merges back into one read-only VMA */

	/* shared anonymous and memfd mappings */
	char *s = mmap(NULL, 4 * PG, RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	s[0] = 1;
	int mfd = memfd_create("edge", 0);
	ftruncate(mfd, 2 * PG);
	char *m = mmap(NULL, 2 * PG, RW, MAP_SHARED, mfd, 0);
	m[0] = 1;
	munmap(m, 2 * PG);
	close(mfd);

	/* mremap */
	char *b = mmap(NULL, 2 * PG, RW, ANON, -1, 0);
	b[0] = 1;
	mremap(b, 2 * PG, 4 * PG, 0);				/* ENOMEM if something is above */
	char *c = mremap(b, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, a + 4 * PG);
	mremap(c + PG, PG, PG, MREMAP_FIXED, a);		/* EINVAL: FIXED without MAYMOVE */

	/* madvise */
	madvise(a, PG, MADV_WILLNEED);
	madvise(s, 4 * PG, MADV_DONTNEED);
	madvise(c, PG, MADV_FREE);
	madvise(a, PG, 12345);				/* EINVAL */
	madvise(a + 3 * PG, PG, MADV_DONTNEED);		/* ENOMEM: the hole */

	/* mlock */
	char *l = mmap(NULL, 4 * PG, RW, ANON, -1, 0);
	syscall(SYS_mlock2, l, 2 * PG, MLOCK_ONFAULT);
	mlock(a + 2 * PG, 2 * PG);			/* ENOMEM: the hole */
	munlock(l, 4 * PG);
	mlockall(0);					/* EINVAL */
	mlockall(MCL_ONFAULT);				/* EINVAL */
	mlockall(MCL_FUTURE);
	char *fut = mmap(NULL, 2 * PG, RW, ANON, -1, 0);	/* locked and populated */
	munlockall();
	munmap(fut, 2 * PG);

	/* brk */
	void *cur = (void *)syscall(SYS_brk, 0);
	syscall(SYS_brk, 0x10000);			/* below the heap: the current brk */
	syscall(SYS_brk, (char *)cur + 3 * PG + 100);	/* grows, unaligned */
	syscall(SYS_brk, (char *)cur + PG);		/* shrinks */

	/* System V shm */
	shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600);	/* EINVAL */
	int id = shmget(IPC_PRIVATE, 3 * PG, IPC_CREAT | 0600);
	char *r = shmat(id, NULL, 0);
	shmat(id, r + PG + 5, 0);			/* EINVAL: misaligned */
	char *r2 = shmat(id, l + PG + 5, SHM_RND | SHM_REMAP);	/* rounds down, replaces */
	shmat(id, a + 5 * PG, 0);			/* EINVAL: overlaps */
	shmdt(r + 1);					/* EINVAL: unaligned */
	shmdt(a);					/* EINVAL: not a segment */
	shmctl(id, IPC_RMID, NULL);			/* marked; still attached twice */
	shmdt(r);
	shmdt(r2);
	shmat(id, NULL, 0);				/* EINVAL or EIDRM: destroyed */

	if (argc > 1)	/* the layout as the process exits */
		dump_maps(argv[1]);
	return 0;
}
