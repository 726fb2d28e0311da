/* Host CPU per page of a balloon inflation on a KVM host: QEMU's virtio-balloon
 * (hw/virtio/virtio-balloon.c, balloon_inflate_page -> ram_block_discard_range) discards
 * each inflated 4 KiB page of guest RAM with madvise(MADV_DONTNEED). This measures that
 * call per page on this machine's kernel: map N pages, touch them (backed), then discard
 * them one madvise call a page, best of R rounds. A deflation (balloon_deflate_page) calls
 * madvise(MADV_WILLNEED) on each deflated page: measured the same way on the discarded
 * pages. Output: JSON.
 * Build and run: gcc -O2 -o /tmp/madv madvise_dontneed.c && /tmp/madv */
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
    double best = 1e9, best_w = 1e9;
    char *p = mmap(NULL, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(p, n * page, MADV_NOHUGEPAGE);  /* 4 KiB pages, as a guest's balloon frames */
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < n; i++) p[i * page] = (char)(i + 1);
        double t0 = now();
        for (size_t i = 0; i < n; i++) madvise(p + i * page, page, MADV_DONTNEED);
        double t = (now() - t0) / n;
        if (t < best) best = t;
        t0 = now();
        for (size_t i = 0; i < n; i++) madvise(p + i * page, page, MADV_WILLNEED);
        t = (now() - t0) / n;
        if (t < best_w) best_w = t;
    }
    struct utsname u;
    uname(&u);
    printf("{\"kernel\": \"%s\", \"pages\": %zu, \"rounds\": %d, "
           "\"dontneed_seconds_per_page_best\": %.3e, \"willneed_seconds_per_page_best\": %.3e}\n",
           u.release, n, rounds, best, best_w);
    return 0;
}
