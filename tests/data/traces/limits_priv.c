/* limits_priv: resource limits, capabilities and a uid change, each as the memory calls
 * after it see them (see limits_priv.trace). Run as root: root's CAP_IPC_LOCK lets mlock
 * pass RLIMIT_MEMLOCK until capset drops it; setuid to nobody then drops every
 * capability (CAP_SYS_RESOURCE too, so the hard limit can no longer be raised).
 *   RLIMIT_MEMLOCK: mlock, MAP_LOCKED, mlockall against 8 KiB
 *   RLIMIT_AS:      mmap beyond it
 *   RLIMIT_DATA:    a private writable mapping and brk beyond it
 *   RLIMIT_STACK:   read back with prlimit64
 * `limits_priv FILE` copies /proc/self/maps to FILE just before it exits. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/capability.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PG 4096
#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)

static void dump(const char *out)
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

static void drop_cap(int cap)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	syscall(SYS_capget, &h, d);
	d[cap / 32].effective &= ~(1u << (cap % 32));
	syscall(SYS_capset, &h, d);
}

int main(int argc, char **argv)
{
	struct rlimit rl, old;

	/* RLIMIT_MEMLOCK with CAP_IPC_LOCK (root) */
	rl.rlim_cur = rl.rlim_max = 2 * PG;
	setrlimit(RLIMIT_MEMLOCK, &rl);
	char *l = mmap(NULL, 4 * PG, RW, ANON, -1, 0);
	mlock(l, 4 * PG);					/* 0: CAP_IPC_LOCK */
	munlock(l, 4 * PG);

	/* without CAP_IPC_LOCK */
	drop_cap(CAP_IPC_LOCK);
	mlock(l, 4 * PG);					/* ENOMEM */
	mlock(l, 2 * PG);					/* 0 */
	mmap(NULL, 4 * PG, RW, ANON | MAP_LOCKED, -1, 0);	/* EAGAIN */
	mlockall(MCL_CURRENT);					/* ENOMEM */
	munlock(l, 2 * PG);

	/* RLIMIT_AS */
	getrlimit(RLIMIT_AS, &old);
	rl.rlim_cur = 512UL << 20;
	rl.rlim_max = old.rlim_max;
	setrlimit(RLIMIT_AS, &rl);
	mmap(NULL, 1UL << 30, PROT_READ, ANON, -1, 0);		/* ENOMEM */
	char *as = mmap(NULL, 64 << 20, PROT_READ, ANON, -1, 0);	/* fits */
	munmap(as, 64 << 20);
	setrlimit(RLIMIT_AS, &old);

	/* RLIMIT_DATA */
	getrlimit(RLIMIT_DATA, &old);
	rl.rlim_cur = 1 << 20;
	rl.rlim_max = old.rlim_max;
	setrlimit(RLIMIT_DATA, &rl);
	mmap(NULL, 2 << 20, RW, ANON, -1, 0);			/* ENOMEM */
	mmap(NULL, 2 << 20, PROT_READ, ANON, -1, 0);		/* not data: fits */
	void *b = sbrk(0);
	brk((char *)b + (4 << 20));				/* refused: the break stays */
	setrlimit(RLIMIT_DATA, &old);

	/* RLIMIT_STACK, read back */
	getrlimit(RLIMIT_STACK, &old);
	rl.rlim_cur = 16 << 20;
	rl.rlim_max = old.rlim_max;
	setrlimit(RLIMIT_STACK, &rl);
	getrlimit(RLIMIT_STACK, &rl);

	/* setuid: every capability goes */
	rl.rlim_cur = rl.rlim_max = 4 * PG;
	setrlimit(RLIMIT_MEMLOCK, &rl);
	setuid(65534);
	rl.rlim_cur = rl.rlim_max = 64 * PG;
	setrlimit(RLIMIT_MEMLOCK, &rl);				/* EPERM: no CAP_SYS_RESOURCE */
	mlock(l, 4 * PG);					/* 0: within 16 KiB */
	char *l2 = mmap(NULL, 2 * PG, RW, ANON, -1, 0);
	mlock(l2, 2 * PG);					/* ENOMEM */
	rl.rlim_cur = 0;
	rl.rlim_max = 4 * PG;
	setrlimit(RLIMIT_MEMLOCK, &rl);
	mlock(l2, PG);						/* EPERM: limit 0, no capability */
	setuid(0);						/* EPERM */

	if (argc > 1)
		dump(argv[1]);
	return 0;
}
