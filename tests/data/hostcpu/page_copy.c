/* CPU per 4 KiB page copy on this machine: what a guest kernel spends in copy_highpage()
 * (mm/migrate.c folio_copy for compaction's migrations, khugepaged's
 * __collapse_huge_page_copy -> copy_mc_user_highpage), i.e. copy_page() on x86_64 (rep
 * movsq over 4 KiB, as memcpy does for a page-aligned 4 KiB block). Source and
 * destination are 256 MiB each, more than the caches, as a migration's old and new
 * frames are: each round copies every page once, best of R rounds. Output: JSON.
 * Build and run: gcc -O2 -o /tmp/pcopy page_copy.c && /tmp/pcopy > page_copy.json */
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

int main(void) {
    const size_t n = 65536, page = 4096;  /* 256 MiB */
    const int rounds = 5;
    double best = 1e9;
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
        double t = (now() - t0) / n;
        if (t < best) best = t;
        sum += (unsigned char)dst[(r * 4099) % (n * page)];
    }
    struct utsname u;
    uname(&u);
    printf("{\"kernel\": \"%s\", \"pages\": %zu, \"rounds\": %d, \"copy_seconds_per_page_best\": %.4g, \"check\": %lu}\n",
           u.release, n, rounds, best, sum);
    return 0;
}
