/* anon_touch: the anonymous working set of measure_workingset_anon.py.
 * anon_touch MIB PASSES: maps MIB MiB of private anonymous memory (MADV_NOHUGEPAGE:
 * order-0 pages as the guest's), then runs PASSES passes over it, page by page in
 * address order: pass 0 writes every page (a distinct non-zero word, so no page is the
 * zero page or a duplicate), later passes read one word of each page. Before each pass
 * it prints "pass N" and waits for a line on stdin (the driver samples the counters);
 * at the end it prints "done" and waits again, then exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	size_t size = (size_t)atol(argv[1]) << 20;
	int passes = atoi(argv[2]);
	char line[64];
	volatile unsigned long sum = 0;
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); return 1; }
	madvise(p, size, MADV_NOHUGEPAGE);
	for (int pass = 0; pass < passes; pass++) {
		printf("pass %d\n", pass); fflush(stdout);
		if (!fgets(line, sizeof line, stdin)) return 1;
		for (size_t off = 0; off < size; off += 4096) {
			if (pass == 0)
				*(unsigned long *)(p + off) = off + 1;
			else
				sum += *(unsigned long *)(p + off);
		}
	}
	printf("done\n"); fflush(stdout);
	if (!fgets(line, sizeof line, stdin)) return 1;
	return sum == 0;
}
