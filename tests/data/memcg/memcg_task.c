/* memcg_task: the task measure_memcg.py puts in (and moves between) memory cgroups.
 * It reads one command per line on stdin, does it, and answers one line on stdout
 * ("ok ..." or "err ...") so the driver can sample the cgroup's files between steps:
 *   anon MIB    map MIB MiB of private anonymous memory (MADV_NOHUGEPAGE: order-0 pages)
 *               and write one distinct non-zero word in every page (no zero page)
 *   pages K     the same with K pages (4 KiB each)
 *   free        munmap the area the last anon/pages mapped
 *   read PATH   read PATH start to end with read(2) in 1 MiB chunks (page cache);
 *               answers "ok BYTES"
 *   mincore PATH  mmap PATH and count its pages resident in the page cache (mincore);
 *               answers "ok RESIDENT TOTAL"
 *   exit        exit 0
 * At start it prints "ready". Every step that maps memory unmaps nothing else. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096UL

static char *area;
static size_t area_size;

static int touch(size_t size)
{
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	madvise(p, size, MADV_NOHUGEPAGE);
	for (size_t off = 0; off < size; off += PAGE)
		*(unsigned long *)(p + off) = off + 1;
	area = p;
	area_size = size;
	return 0;
}

static long long read_file(const char *path)
{
	static char buf[1 << 20];
	long long total = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		total += n;
	close(fd);
	return total;
}

static int resident(const char *path, size_t *res, size_t *pages)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st))
		return -1;
	*pages = (st.st_size + PAGE - 1) / PAGE;
	void *p = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -1;
	unsigned char *vec = malloc(*pages);
	if (!vec || mincore(p, st.st_size, vec))
		return -1;
	*res = 0;
	for (size_t i = 0; i < *pages; i++)
		*res += vec[i] & 1;
	free(vec);
	munmap(p, st.st_size);
	return 0;
}

int main(void)
{
	char line[4096], arg[4000];
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		long v;
		if (sscanf(line, "anon %ld", &v) == 1) {
			if (touch((size_t)v << 20))
				printf("err anon\n");
			else
				printf("ok\n");
		} else if (sscanf(line, "pages %ld", &v) == 1) {
			if (touch((size_t)v * PAGE))
				printf("err pages\n");
			else
				printf("ok\n");
		} else if (!strncmp(line, "free", 4)) {
			munmap(area, area_size);
			area = NULL;
			area_size = 0;
			printf("ok\n");
		} else if (sscanf(line, "read %3999s", arg) == 1) {
			printf("ok %lld\n", read_file(arg));
		} else if (sscanf(line, "mincore %3999s", arg) == 1) {
			size_t res, pages;
			if (resident(arg, &res, &pages))
				printf("err mincore\n");
			else
				printf("ok %zu %zu\n", res, pages);
		} else if (!strncmp(line, "exit", 4)) {
			return 0;
		} else {
			printf("err %s", line);
		}
		fflush(stdout);
	}
	return 0;
}
