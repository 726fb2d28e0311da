/* One page fault at a time on this machine's kernel, with what the kernel counted for it:
 * /proc/vmstat pgfault and pgmajfault (system-wide: other processes can only add, so
 * measure_fault_retry.py keeps each case's smallest delta over its trials), this task's
 * getrusage minflt/majflt, the pages of the mapping present afterwards (/proc/self/pagemap)
 * and the file's cached pages (mincore). Each trial starts from a cold file
 * (posix_fadvise DONTNEED, checked with mincore) and a new mapping.
 *
 * Usage: fault_retry FILE NPAGES CASE TRIALS   -> one JSON line per trial on stdout
 * CASE: read_miss   read fault on page 32 of a MAP_SHARED read-only mapping
 *       read_hit    read_miss, then a read fault on page 20 (cached by the read-around)
 *       cow_miss    write fault on page 32 of a MAP_PRIVATE read-write mapping
 *       random_miss read fault on page 32 after MADV_RANDOM
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define PAGE 4096
static char vmbuf[1 << 16];
static unsigned char mc[1 << 16];
static uint64_t pm[1 << 16];
static int vmfd, pmfd;

static void vmstat(long long *pgfault, long long *pgmajfault)
{
	ssize_t n = pread(vmfd, vmbuf, sizeof(vmbuf) - 1, 0);
	if (n <= 0) { perror("vmstat"); exit(1); }
	vmbuf[n] = 0;
	char *p = strstr(vmbuf, "\npgfault ");
	char *q = strstr(vmbuf, "\npgmajfault ");
	if (!p || !q) { fprintf(stderr, "no pgfault\n"); exit(1); }
	*pgfault = atoll(p + 9);
	*pgmajfault = atoll(q + 12);
}

static void runs(const char *name, int npages, int (*is_on)(int))
{
	printf("\"%s\":[", name);
	int start = -1, first = 1;
	for (int i = 0; i <= npages; i++) {
		int on = i < npages && is_on(i);
		if (on && start < 0)
			start = i;
		if (!on && start >= 0) {
			printf("%s[%d,%d]", first ? "" : ",", start, i);
			first = 0;
			start = -1;
		}
	}
	printf("]");
}

static int mc_on(int i) { return mc[i] & 1; }
static int pm_on(int i) { return (pm[i] >> 63) & 1; }

int main(int argc, char **argv)
{
	if (argc != 5) { fprintf(stderr, "usage: fault_retry FILE NPAGES CASE TRIALS\n"); return 2; }
	const char *path = argv[1];
	int npages = atoi(argv[2]);
	const char *cas = argv[3];
	int trials = atoi(argv[4]);
	int fd = open(path, O_RDWR);
	vmfd = open("/proc/vmstat", O_RDONLY);
	pmfd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0 || vmfd < 0 || pmfd < 0) { perror("open"); return 1; }
	/* this program's own pages faulted in now: none of them faults while measuring */
	if (mlockall(MCL_CURRENT)) { perror("mlockall"); return 1; }
	size_t len = (size_t)npages * PAGE;
	/* a probe mapping never touched: mincore of the page cache */
	unsigned char *probe = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	/* an address aligned on 64 pages, so that fault-around windows are file-aligned */
	char *hole = mmap(NULL, len + 64 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (probe == MAP_FAILED || hole == MAP_FAILED) { perror("mmap"); return 1; }
	char *base = (char *)(((uintptr_t)hole + 64 * PAGE - 1) & ~((uintptr_t)64 * PAGE - 1));
	munmap(hole, len + 64 * PAGE);
	int cow = !strcmp(cas, "cow_miss");
	for (int t = 0; t < trials; t++) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		mincore(probe, len, mc);
		for (int i = 0; i < npages; i++)
			if (mc[i] & 1) { fprintf(stderr, "file still cached\n"); return 1; }
		char *m = mmap(base, len, cow ? PROT_READ | PROT_WRITE : PROT_READ,
			       (cow ? MAP_PRIVATE : MAP_SHARED) | MAP_FIXED, fd, 0);
		if (m != base) { perror("mmap"); return 1; }
		if (!strcmp(cas, "random_miss"))
			madvise(m, len, MADV_RANDOM);
		volatile char sink;
		if (!strcmp(cas, "read_hit"))
			sink = m[32 * PAGE];
		long long f0, j0, f1, j1;
		struct rusage r0, r1;
		getrusage(RUSAGE_SELF, &r0);
		vmstat(&f0, &j0);
		if (cow)
			m[32 * PAGE] = 1;
		else
			sink = m[(!strcmp(cas, "read_hit") ? 20 : 32) * PAGE];
		vmstat(&f1, &j1);
		getrusage(RUSAGE_SELF, &r1);
		(void)sink;
		if (pread(pmfd, pm, (size_t)npages * 8, (off_t)((uintptr_t)m / PAGE) * 8) != (ssize_t)npages * 8) {
			perror("pagemap");
			return 1;
		}
		mincore(probe, len, mc);
		printf("{\"case\":\"%s\",\"pgfault\":%lld,\"pgmajfault\":%lld,\"minflt\":%ld,\"majflt\":%ld,",
		       cas, f1 - f0, j1 - j0, r1.ru_minflt - r0.ru_minflt, r1.ru_majflt - r0.ru_majflt);
		runs("present", npages, pm_on);
		printf(",");
		runs("cached", npages, mc_on);
		printf("}\n");
		fflush(stdout);
		munmap(m, len);
	}
	return 0;
}
