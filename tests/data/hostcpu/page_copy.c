/* CPU per 4 KiB page copy on this machine: what a guest kernel spends in copy_highpage()
 * (mm/migrate.c folio_copy for compaction's migrations, khugepaged's
 * __collapse_huge_page_copy -> copy_mc_user_highpage) and copy_user_highpage() (a
 * copy-on-write break: wp_page_copy -> __wp_page_copy_user), i.e. copy_page() on x86_64
 * (rep movsq over 4 KiB, as memcpy does for a page-aligned 4 KiB block). Source and
 * destination are 256 MiB each, more than the caches, as a migration's old and new
 * frames are: each round copies every page once and its time per page is printed, one
 * figure a round. Output: JSON. Run by measure_page_costs.py together with page_clear.c
 * (same sizes and method), which keeps the minimum and median over many runs.
 * Build and run: gcc -O2 -o /tmp/pcopy page_copy.c && /tmp/pcopy [ROUNDS] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const size_t n = 65536, page = 4096;  /* 256 MiB */
    const int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1 || rounds > 1000) { fprintf(stderr, "rounds: 1..1000\n"); return 2; }
    double t[1000];
    char *src = mmap(NULL, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *dst = mmap(NULL, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (src == MAP_FAILED || dst == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(src, n * page, MADV_NOHUGEPAGE);
    madvise(dst, n * page, MADV_NOHUGEPAGE);
    memset(src, 0x5a, n * page);  /* both backed: no fault is timed */
    memset(dst, 0xa5, n * page);
    for (size_t i = 0; i < n * page; i += 64) src[i] = (char)i;
    unsigned long sum = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (size_t i = 0; i < n; i++) memcpy(dst + i * page, src + i * page, page);
        t[r] = (now() - t0) / n;
        sum += (unsigned char)dst[(r * 4099) % (n * page)];
    }
    struct utsname u;
    uname(&u);
    printf("{\"kernel\": \"%s\", \"pages\": %zu, \"rounds\": %d, \"copy_seconds_per_page\": [", u.release, n, rounds);
    for (int r = 0; r < rounds; r++) printf("%s%.4g", r ? ", " : "", t[r]);
    printf("], \"check\": %lu}\n", sum);
    return 0;
}
