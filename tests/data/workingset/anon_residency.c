/* anon_residency: anon_touch (anon_touch.c) with a look at where the area's pages are
 * during pass 1 (the first read pass), for measure_anon_residency.py.
 * anon_residency MIB PASSES FIRST OUT: before reading page i of pass 1, for every i below
 * FIRST and every 64th i after, it classifies all the area's pages by /proc/self/pagemap
 * (bit 63: present, mapped) and mincore() (a page not mapped but in the swap cache:
 * unmapped by reclaim, not yet freed; else swapped out) and records
 * "i mapped swapcache out"; the records are written to OUT at the end (so that the
 * pass's timing is disturbed only by the looks themselves). Passes and the stdin/stdout
 * handshake are anon_touch's. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAXS 4096

int main(int argc, char **argv)
{
	size_t size = (size_t)atol(argv[1]) << 20, np = size >> 12;
	int passes = atoi(argv[2]);
	size_t first = (size_t)atol(argv[3]);
	char line[64];
	volatile unsigned long sum = 0;
	static int sx[MAXS], sm[MAXS], sc[MAXS], so[MAXS];
	int ns = 0;
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); return 1; }
	madvise(p, size, MADV_NOHUGEPAGE);
	int pm = open("/proc/self/pagemap", O_RDONLY);
	uint64_t *ent = malloc(np * 8);
	unsigned char *vec = malloc(np);
	for (int pass = 0; pass < passes; pass++) {
		printf("pass %d\n", pass); fflush(stdout);
		if (!fgets(line, sizeof line, stdin)) return 1;
		for (size_t i = 0; i < np; i++) {
			size_t off = i << 12;
			if (pass == 0) {
				*(unsigned long *)(p + off) = off + 1;
				continue;
			}
			if (pass == 1 && (i < first || i % 64 == 0) && ns < MAXS) {
				int m = 0, c = 0, o = 0;
				pread(pm, ent, np * 8, (uintptr_t)p / 4096 * 8);
				mincore(p, size, vec);
				for (size_t j = 0; j < np; j++) {
					if (ent[j] >> 63) m++;
					else if (vec[j] & 1) c++;
					else o++;
				}
				sx[ns] = i; sm[ns] = m; sc[ns] = c; so[ns] = o; ns++;
			}
			sum += *(unsigned long *)(p + off);
		}
	}
	printf("done\n"); fflush(stdout);
	if (!fgets(line, sizeof line, stdin)) return 1;
	FILE *f = fopen(argv[4], "w");
	for (int s = 0; s < ns; s++)
		fprintf(f, "%d %d %d %d\n", sx[s], sm[s], sc[s], so[s]);
	fclose(f);
	return sum == 0;
}
