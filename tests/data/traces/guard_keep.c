/* guard_keep: do guard markers survive MADV_FREE, mprotect and MADV_REMOVE (a shared
 * memfd mapping)? Each line is the result of a MADV_POPULATE_READ of a guarded page after
 * the call named: -1 (EFAULT) if the marker is still there. Output: guard_keep.out. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define PG 4096
#define GUARD_INSTALL 102

static void pop(const char *after, char *p)
{
	int r = madvise(p, PG, MADV_POPULATE_READ);
	printf("%s: %d %s\n", after, r, r ? strerror(errno) : "");
}

int main(void)
{
	char *g = mmap(0, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(g, 1, 4 * PG);
	madvise(g + PG, PG, GUARD_INSTALL);
	madvise(g, 4 * PG, MADV_FREE);
	pop("MADV_FREE", g + PG);
	mprotect(g, 4 * PG, PROT_READ);
	pop("mprotect", g + PG);
	int fd = memfd_create("x", 0);
	ftruncate(fd, 4 * PG);
	char *s = mmap(0, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	printf("install on a shared memfd mapping: %d\n", madvise(s + PG, PG, GUARD_INSTALL));
	madvise(s, 4 * PG, MADV_REMOVE);
	pop("MADV_REMOVE", s + PG);
	return 0;
}
