/* new_mm: the address-space interfaces of Linux 6.10-6.17, each call recorded with the
 * result this machine's kernel gave (see new_mm.trace):
 *   MADV_GUARD_INSTALL / MADV_GUARD_REMOVE (6.13): populate over a guard, markers kept
 *     through MADV_DONTNEED, fork and mremap, mlock over a guard, a touch of a guard page
 *     (a child killed by SIGSEGV), install on a locked VMA, over a hole, on a file mapping;
 *   mseal (6.10): bad flags and alignment, a hole, then munmap, mprotect, mremap,
 *     MAP_FIXED and the discard advices on sealed VMAs;
 *   MAP_DROPPABLE (6.11) and its refusals (MAP_LOCKED, MAP_GROWSDOWN, a file), mlock of it;
 *   MADV_POPULATE_READ / _WRITE against the VMA's permissions, a hole, a file's EOF;
 *   MADV_REMOVE on a shared file mapping (ext4 punches the hole), a private one, anon;
 *   memfd_create with F_ADD_SEALS (EBUSY while mapped writable, then F_SEAL_WRITE);
 *   mremap moving a range of several VMAs and gaps (6.17), with and without DONTUNMAP.
 * `new_mm FILE` copies /proc/self/smaps to FILE just before it exits (raw system calls).
 * Run as root in a scratch directory: it creates new_mm.dat there. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096
#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif
#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#ifndef SYS_mseal
#define SYS_mseal 462
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_WRITE 0x0008
#endif

static long mseal(void *p, size_t len, unsigned long flags)
{
	return syscall(SYS_mseal, p, len, flags);
}

static void dump(const char *from, const char *out)
{
	static char buf[1 << 20];
	ssize_t n, total = 0;
	int in = open(from, O_RDONLY);
	while ((n = read(in, buf + total, sizeof(buf) - 1 - total)) > 0)
		total += n;
	close(in);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	write(fd, buf, total);
	close(fd);
}

int main(int argc, char **argv)
{
	int status;

	/* ---- guard regions ---- */
	char *g = mmap(NULL, 8 * PG, RW, ANON, -1, 0);
	memset(g, 1, 8 * PG);
	madvise(g + 2 * PG, 2 * PG, MADV_GUARD_INSTALL);	/* 0: pages zapped, markers set */
	madvise(g, 8 * PG, MADV_POPULATE_READ);			/* EFAULT at the guard */
	madvise(g, 2 * PG, MADV_POPULATE_WRITE);		/* 0 */
	madvise(g, 8 * PG, MADV_DONTNEED);			/* 0: markers kept */
	madvise(g + 3 * PG, PG, MADV_POPULATE_WRITE);		/* EFAULT */
	if (fork() == 0) {
		madvise(g + 2 * PG, PG, MADV_POPULATE_READ);	/* EFAULT: the child has them */
		_exit(0);
	}
	wait(&status);
	char *g2 = mmap(NULL, 8 * PG, PROT_NONE, ANON, -1, 0);
	g = mremap(g, 8 * PG, 8 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, g2);
	madvise(g + 2 * PG, PG, MADV_POPULATE_READ);		/* EFAULT: moved with the PTEs */
	mlock(g, 8 * PG);					/* ENOMEM: the populate hits the guard */
	madvise(g, PG, MADV_GUARD_INSTALL);			/* EINVAL: VM_LOCKED */
	madvise(g + 2 * PG, PG, MADV_GUARD_REMOVE);		/* 0: allowed on locked VMAs */
	munlock(g, 8 * PG);
	madvise(g + 2 * PG, 2 * PG, MADV_POPULATE_WRITE);	/* EFAULT: g+3 still guarded */
	madvise(g + 2 * PG, PG, MADV_POPULATE_WRITE);		/* 0 */
	munmap(g + 5 * PG, PG);
	madvise(g + 4 * PG, 2 * PG, MADV_GUARD_INSTALL);	/* ENOMEM: the hole; g+4 guarded */
	madvise(g + 4 * PG, PG, MADV_POPULATE_READ);		/* EFAULT */
	if (fork() == 0) {
		g[3 * PG] = 1;					/* SIGSEGV */
		_exit(0);
	}
	wait(&status);
	int gfd = open("new_mm.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
	ftruncate(gfd, 4 * PG);
	char *gf = mmap(NULL, 4 * PG, PROT_READ, MAP_PRIVATE, gfd, 0);
	madvise(gf + PG, PG, MADV_GUARD_INSTALL);		/* 0 on 6.15+: file mappings too */
	madvise(gf, 4 * PG, MADV_POPULATE_READ);		/* EFAULT */
	munmap(gf, 4 * PG);
	munmap(g, 8 * PG);

	/* ---- mseal ---- */
	char *s = mmap(NULL, 4 * PG, RW, ANON, -1, 0);
	mseal(s + PG, 2 * PG, 1);				/* EINVAL: flags */
	mseal(s + 1, PG, 0);					/* EINVAL: unaligned */
	munmap(s + 3 * PG, PG);
	mseal(s + 2 * PG, 2 * PG, 0);				/* ENOMEM: the hole */
	mmap(s + 3 * PG, PG, RW, ANON | MAP_FIXED, -1, 0);
	mseal(s + PG, 2 * PG, 0);				/* 0: [s+1, s+3) sealed */
	mseal(s + PG, 2 * PG, 0);				/* 0 again */
	munmap(s, 4 * PG);					/* EPERM */
	munmap(s + 2 * PG, PG);					/* EPERM */
	mprotect(s, 2 * PG, PROT_READ);				/* EPERM at s+1; s changed? */
	mprotect(s + PG, PG, RW);				/* same rights: EPERM? */
	mremap(s + PG, PG, 2 * PG, MREMAP_MAYMOVE);		/* EPERM */
	mremap(s + 3 * PG, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, s + PG);	/* EPERM */
	mmap(s + PG, PG, RW, ANON | MAP_FIXED, -1, 0);		/* EPERM */
	madvise(s + PG, PG, MADV_DONTNEED);			/* 0: writable anon */
	madvise(s + PG, PG, MADV_WILLNEED);			/* 0 */
	char *r = mmap(NULL, 2 * PG, PROT_READ, ANON, -1, 0);
	mseal(r, 2 * PG, 0);
	madvise(r, PG, MADV_DONTNEED);				/* EPERM: read-only anon */
	madvise(r, PG, MADV_FREE);				/* EPERM */
	madvise(r, PG, MADV_DONTFORK);				/* EPERM */
	madvise(r, PG, MADV_WIPEONFORK);			/* EPERM */
	madvise(r, PG, MADV_GUARD_INSTALL);			/* EPERM */
	madvise(r, PG, MADV_NOHUGEPAGE);			/* 0 */
	madvise(r, 2 * PG, MADV_COLD);				/* 0 */
	char *sf = mmap(NULL, 2 * PG, PROT_READ, MAP_PRIVATE, gfd, 0);
	mseal(sf, 2 * PG, 0);
	madvise(sf, PG, MADV_DONTNEED);				/* 0: a file mapping */

	/* ---- MAP_DROPPABLE ---- */
	char *d = mmap(NULL, 4 * PG, RW, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
	d[0] = 1;
	mmap(NULL, PG, RW, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);		/* EINVAL */
	mmap(NULL, PG, RW, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);	/* EINVAL */
	mmap(NULL, PG, RW, MAP_DROPPABLE, gfd, 0);					/* EINVAL */
	mlock(d, 4 * PG);					/* 0, not locked */

	/* ---- MADV_POPULATE_* permissions ---- */
	char *pn = mmap(NULL, 2 * PG, PROT_NONE, ANON, -1, 0);
	madvise(pn, 2 * PG, MADV_POPULATE_READ);		/* EINVAL */
	char *ro = mmap(NULL, 2 * PG, PROT_READ, ANON, -1, 0);
	madvise(ro, 2 * PG, MADV_POPULATE_WRITE);		/* EINVAL */
	madvise(ro, 2 * PG, MADV_POPULATE_READ);		/* 0 */
	madvise(pn + 2 * PG + 64 * PG, PG, MADV_POPULATE_READ);	/* ENOMEM: nothing mapped */
	int rofd = open("new_mm.dat", O_RDONLY);
	char *fs = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, rofd, 0);
	madvise(fs, 2 * PG, MADV_POPULATE_WRITE);		/* EINVAL */
	char *eof = mmap(NULL, 8 * PG, PROT_READ, MAP_PRIVATE, rofd, 0);
	madvise(eof, 8 * PG, MADV_POPULATE_READ);		/* EFAULT: SIGBUS past EOF */

	/* ---- MADV_REMOVE ---- */
	char *fw = mmap(NULL, 4 * PG, RW, MAP_SHARED, gfd, 0);
	memset(fw, 2, 4 * PG);
	madvise(fw + PG, 2 * PG, MADV_REMOVE);			/* 0: ext4 punches a hole */
	madvise(fs, PG, MADV_REMOVE);				/* EACCES: opened read-only */
	char *fp = mmap(NULL, 2 * PG, RW, MAP_PRIVATE, gfd, 0);
	madvise(fp, PG, MADV_REMOVE);				/* EACCES: private */
	madvise(ro, PG, MADV_REMOVE);				/* EINVAL: anonymous */
	mlock(fw, PG);
	madvise(fw, PG, MADV_REMOVE);				/* EINVAL: locked */

	/* ---- memfd with seals ---- */
	int mfd = memfd_create("sealed", MFD_ALLOW_SEALING);
	ftruncate(mfd, 4 * PG);
	char *mw = mmap(NULL, 4 * PG, RW, MAP_SHARED, mfd, 0);
	mw[0] = 1;
	fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE);			/* EBUSY: mapped writable */
	munmap(mw, 4 * PG);
	fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK);	/* 0 */
	mmap(NULL, 4 * PG, RW, MAP_SHARED, mfd, 0);		/* EPERM */
	char *mr = mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED, mfd, 0);
	mprotect(mr, 4 * PG, RW);				/* EACCES: no VM_MAYWRITE */
	mmap(NULL, 4 * PG, RW, MAP_PRIVATE, mfd, 0);		/* a private copy is fine */
	ftruncate(mfd, PG);					/* EPERM: F_SEAL_SHRINK */
	madvise(mr, PG, MADV_REMOVE);				/* EACCES */

	/* ---- mremap over several VMAs (6.17) ---- */
	char *m = mmap(NULL, 6 * PG, RW, ANON, -1, 0);
	mprotect(m + 2 * PG, PG, PROT_READ);			/* VMAs [0,2) [2,3) [3,6) */
	munmap(m + 4 * PG, PG);					/* [0,2) [2,3) [3,4) gap [5,6) */
	char *t = mmap(NULL, 6 * PG, PROT_NONE, ANON, -1, 0);
	mremap(m, 6 * PG, 7 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, t);	/* EFAULT: a resize */
	mremap(m, 6 * PG, 6 * PG, MREMAP_MAYMOVE, 0);		/* EFAULT: not FIXED */
	mremap(m, 6 * PG, 6 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, t);	/* t: moved, gap kept */
	char *u = mmap(NULL, 6 * PG, PROT_NONE, ANON, -1, 0);
	mremap(t - PG, 7 * PG, 7 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, u);	/* EFAULT: starts in a gap? */
	mremap(t, 6 * PG, 6 * PG, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, u);

	if (argc > 1)
		dump("/proc/self/smaps", argv[1]);
	return 0;
}
