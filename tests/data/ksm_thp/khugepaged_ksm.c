/* khugepaged_ksm.c: on Linux 6.x, do ksmd and khugepaged compete over THPs of
 * MADV_HUGEPAGE memory (QEMU's guest RAM), and does khugepaged collapse a range KSM split
 * once the merged content diverges?  Built and run by record_khugepaged.sh (as root,
 * ksmd's settings saved and restored there; khugepaged's left at their defaults).
 *
 * Four 2 MiB-aligned anonymous ranges of 2 MiB, MADV_HUGEPAGE, each faulted in with one
 * write (a THP) and filled page by page:
 *   A  subpages 0..199 pattern(i), 200..511 unique(A, i)
 *   B  subpages 0..199 pattern(i) (identical to A's), 200..511 unique(B, i)
 *   C  subpages 0..299 pattern(1000 + i), 300..511 unique(C, i)
 *   D  subpages 0..299 as C's, 300..511 unique(D, i)
 * then MADV_MERGEABLE on all four.  KSM merges A's and B's 200 common subpages (200 <=
 * max_ptes_shared 256 each side) and C's and D's 300 (> 256).  At `diverge` seconds A
 * writes new unique content into its subpages 0..199 (copy-on-write of the KSM pages):
 * A then holds no KSM page, B's 200 KSM pages are mapped once.  Every 200 ms for
 * `seconds`: each range's AnonHugePages (smaps), /sys/kernel/mm/ksm counters, khugepaged's
 * pages_collapsed and full_scans, and /proc/vmstat thp_collapse_alloc and thp_split_page
 * (the last three machine-wide: other processes may count too).
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
#define NR 4

static const char *names[NR] = {"A", "B", "C", "D"};
static char *base[NR];

static void fill(char *p, uint64_t seed) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < PAGE; i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
}

static long readlong(const char *path) {
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) { if (fscanf(f, "%ld", &v) != 1) v = -1; fclose(f); }
    return v;
}

static long ksm(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "/sys/kernel/mm/ksm/%s", name);
    return readlong(path);
}

static long khp(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "/sys/kernel/mm/transparent_hugepage/khugepaged/%s", name);
    return readlong(path);
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

static void anon_huge(long out[NR]) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int cur = -1;
    for (int i = 0; i < NR; i++) out[i] = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        long kb;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            cur = -1;
            for (int i = 0; i < NR; i++)
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
    double seconds = argc > 1 ? atof(argv[1]) : 75.0;
    double diverge = argc > 2 ? atof(argv[2]) : 45.0;
    for (int r = 0; r < NR; r++) {
        char *raw = mmap(NULL, 3 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) { perror("mmap"); return 1; }
        char *p = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
        base[r] = p;
        if (madvise(p, HUGE, MADV_HUGEPAGE)) { perror("madvise"); return 1; }
        p[0] = 1;
        for (int i = 0; i < NSUB; i++) {
            char *s = p + i * PAGE;
            if (r <= 1 && i < 200)
                fill(s, 1 + i);
            else if (r >= 2 && i < 300)
                fill(s, 1000 + i);
            else
                fill(s, (uint64_t)(r + 1) << 32 | i);
        }
    }
    long ah[NR];
    anon_huge(ah);
    printf("page_size %lu\n", PAGE);
    for (int r = 0; r < NR; r++) printf("anon_huge_kb_before_%s %ld\n", names[r], ah[r]);
    printf("diverge_s %.1f\n", diverge);
    long split0 = vmstat("thp_split_page"), coll0 = vmstat("thp_collapse_alloc");
    long pc0 = khp("pages_collapsed"), fs0 = khp("full_scans");
    for (int r = 0; r < NR; r++)
        if (madvise(base[r], HUGE, MADV_MERGEABLE)) { perror("MADV_MERGEABLE"); return 1; }
    double t0 = now();
    long scans0 = ksm("full_scans");
    int diverged = 0;
    printf("columns t_s ksm_full_scans pages_shared pages_sharing thp_split_page thp_collapse_alloc "
           "pages_collapsed khugepaged_full_scans AH_A AH_B AH_C AH_D\n");
    for (;;) {
        double t = now() - t0;
        if (!diverged && t >= diverge) {
            for (int i = 0; i < 200; i++)
                fill(base[0] + i * PAGE, (uint64_t)7 << 40 | i);
            diverged = 1;
            printf("# A's subpages 0..199 written at %.2f s\n", t);
        }
        anon_huge(ah);
        printf("row %.2f %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld\n", t,
               ksm("full_scans") - scans0, ksm("pages_shared"), ksm("pages_sharing"),
               vmstat("thp_split_page") - split0, vmstat("thp_collapse_alloc") - coll0,
               khp("pages_collapsed") - pc0, khp("full_scans") - fs0, ah[0], ah[1], ah[2], ah[3]);
        fflush(stdout);
        if (t >= seconds) break;
        usleep(200000);
    }
    return 0;
}
