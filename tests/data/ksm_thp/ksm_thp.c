/* ksm_thp.c: does ksmd (Linux 6.x) merge subpages of a transparent huge page, and what
 * does it do with the huge page?  Built and run by record.sh (as root, ksmd's settings
 * saved and restored there).  Output: one "key value" line per fact, then a time series.
 *
 * Five 2 MiB-aligned anonymous ranges of 2 MiB, each MADV_HUGEPAGE and faulted in with
 * one write (a THP where the kernel can), then filled page by page:
 *   A  subpages   0..127 pattern(i), 128..255 zero, 256..511 unique(A, i)
 *   B  subpages   0..127 pattern(i) (identical to A's), 128..255 zero, 256..511 unique(B, i)
 *   C  every subpage unique(C, i): nothing in it matches anything (a THP that should stay)
 *   D  MADV_NOHUGEPAGE (small pages): subpages 0..127 pattern(i), the rest unique(D, i)
 *   E  every subpage zero-filled (written with zeros), THP
 * then MADV_MERGEABLE on all five, and the process's AnonHugePages (smaps of each range)
 * and /sys/kernel/mm/ksm counters are sampled every 100 ms for `seconds`.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define HUGE (2UL << 20)
#define NSUB 512

static const char *names[5] = {"A", "B", "C", "D", "E"};
static char *base[5];

static void fill(char *p, uint64_t seed) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < PAGE; i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
}

static long ksm(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "/sys/kernel/mm/ksm/%s", name);
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) { if (fscanf(f, "%ld", &v) != 1) v = -1; fclose(f); }
    return v;
}

static long vmstat(const char *name) {
    FILE *f = fopen("/proc/vmstat", "r");
    char key[128];
    long v, out = -1;
    while (f && fscanf(f, "%127s %ld", key, &v) == 2)
        if (!strcmp(key, name)) out = v;
    if (f) fclose(f);
    return out;
}

/* AnonHugePages (kB) of the VMA starting at each range, from /proc/self/smaps */
static void anon_huge(long out[5]) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int cur = -1;
    for (int i = 0; i < 5; i++) out[i] = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        long kb;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            cur = -1;
            for (int i = 0; i < 5; i++)
                if (lo <= (unsigned long)base[i] && (unsigned long)base[i] < hi) cur = i;
        } else if (cur >= 0 && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1) {
            out[cur] = kb;
        }
    }
    fclose(f);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 20.0;
    for (int r = 0; r < 5; r++) {
        /* a separate mapping each, 2 MiB aligned, guard gaps so VMAs never merge */
        char *raw = mmap(NULL, 3 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) { perror("mmap"); return 1; }
        char *p = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
        base[r] = p;
        if (madvise(p, HUGE, r == 3 ? MADV_NOHUGEPAGE : MADV_HUGEPAGE)) { perror("madvise"); return 1; }
        p[0] = 1; /* the fault that maps a THP (or one small page for D) */
        for (int i = 0; i < NSUB; i++) {
            char *s = p + i * PAGE;
            if (r == 4 || ((r == 0 || r == 1) && i >= 128 && i < 256))
                memset(s, 0, PAGE);
            else if ((r == 0 || r == 1 || r == 3) && i < 128)
                fill(s, 1000 + i);
            else
                fill(s, (uint64_t)(r + 1) << 32 | i);
        }
    }
    long ah[5];
    anon_huge(ah);
    printf("page_size %lu\n", PAGE);
    for (int r = 0; r < 5; r++) printf("anon_huge_kb_before_%s %ld\n", names[r], ah[r]);
    long split0 = vmstat("thp_split_page");
    printf("thp_split_page_before %ld\n", split0);
    for (int r = 0; r < 5; r++)
        if (madvise(base[r], HUGE, MADV_MERGEABLE)) { perror("MADV_MERGEABLE"); return 1; }
    double t0 = now();
    long scans0 = ksm("full_scans");
    printf("columns t_s full_scans pages_shared pages_sharing pages_unshared pages_volatile "
           "ksm_zero_pages thp_split_page AH_A AH_B AH_C AH_D AH_E\n");
    for (;;) {
        double t = now() - t0;
        anon_huge(ah);
        printf("row %.2f %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld\n", t,
               ksm("full_scans") - scans0, ksm("pages_shared"), ksm("pages_sharing"),
               ksm("pages_unshared"), ksm("pages_volatile"), ksm("ksm_zero_pages"),
               vmstat("thp_split_page") - split0, ah[0], ah[1], ah[2], ah[3], ah[4]);
        fflush(stdout);
        if (t >= seconds) break;
        usleep(100000);
    }
    return 0;
}
