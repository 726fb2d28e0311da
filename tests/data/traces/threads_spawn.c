/* threads_spawn: a thread allocates from its own malloc arena (glibc reserves 64 MiB
 * aligned with mmap PROT_NONE, trims it with munmap and opens it with mprotect), then the
 * main thread runs /bin/true with posix_spawn (clone CLONE_VM|CLONE_VFORK, then execve in
 * the child) and waits for it. `threads_spawn FILE` also copies its /proc/self/maps to
 * FILE just before it exits. */
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Copy /proc/self/maps to `out` with raw system calls (no malloc, no mmap), so that the
 * real layout can be compared with the replay's. */
static void dump_maps(const char *out)
{
	static char buf[1 << 16];
	ssize_t n, total = 0;
	int in = open("/proc/self/maps", O_RDONLY);
	while ((n = read(in, buf + total, sizeof(buf) - 1 - total)) > 0)
		total += n;
	close(in);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	write(fd, buf, total);
	close(fd);
}

static void *worker(void *arg)
{
	char *p = malloc(200 * 1024);	/* the thread's arena, not the main heap */
	memset(p, 1, 200 * 1024);
	free(p);
	return arg;
}

int main(int argc, char **argv)
{
	pthread_t t;
	pthread_create(&t, NULL, worker, NULL);
	pthread_join(t, NULL);

	pid_t pid;
	char *true_argv[] = { "true", NULL };
	posix_spawn(&pid, "/bin/true", NULL, NULL, true_argv, environ);
	waitpid(pid, NULL, 0);
	if (argc > 1)	/* the layout as the process exits */
		dump_maps(argv[1]);
	return 0;
}
