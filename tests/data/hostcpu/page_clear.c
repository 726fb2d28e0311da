/* CPU per 4 KiB page zeroing on this machine: what a guest kernel spends in clear_page()
 * -- clear_user_highpage() (clear_huge_page's 512 subpages of a THP fault, khugepaged's
 * __collapse_huge_page_copy for each pte_none or zero-page slot it fills) and
 * kernel_init_pages() -> clear_highpage() (post_alloc_hook for __GFP_ZERO or
 * init_on_alloc: a demand-zero fault's page on x86_64, page tables; free_pages_prepare
 * for init_on_free) -- i.e. clear_page_erms on x86_64 (rep stosb over 4 KiB, as memset
 * does for a page-aligned 4 KiB block). The target is 256 MiB, more than the caches, as
 * a freshly allocated page's frame is: each round zeroes every page once and its time
 * per page is printed, one figure a round. Output: JSON. Run by measure_page_costs.py
 * together with page_copy.c (same sizes and method).
 * Build and run: gcc -O2 -o /tmp/pclear page_clear.c && /tmp/pclear [ROUNDS] */
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
    char *dst = mmap(NULL, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (dst == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(dst, n * page, MADV_NOHUGEPAGE);
    memset(dst, 0xa5, n * page);  /* backed: no fault is timed */
    unsigned long sum = 0;
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < n * page; i += 4096) dst[i] = (char)(r + 1);  /* not zero again */
        double t0 = now();
        for (size_t i = 0; i < n; i++) memset(dst + i * page, 0, page);
        t[r] = (now() - t0) / n;
        sum += (unsigned char)dst[(r * 4099) % (n * page)];
    }
    struct utsname u;
    uname(&u);
    printf("{\"kernel\": \"%s\", \"pages\": %zu, \"rounds\": %d, \"clear_seconds_per_page\": [", u.release, n, rounds);
    for (int r = 0; r < rounds; r++) printf("%s%.4g", r ? ", " : "", t[r]);
    printf("], \"check\": %lu}\n", sum);
    return 0;
}
