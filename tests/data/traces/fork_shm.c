/* fork_shm: the parent creates and attaches a System V shared memory segment, writes a
 * data file, and forks; the child maps the file (shared), attaches the segment a second
 * time, detaches both and exits; the parent waits, detaches and removes the segment.
 * `fork_shm FILE` also copies each process's /proc/self/maps (FILE, FILE.child) just
 * before it exits. */
#include <fcntl.h>
#include <string.h>
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096

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

int main(int argc, char **argv)
{
	static char buf[3 * PG];
	int id = shmget(IPC_PRIVATE, 16 * PG, IPC_CREAT | 0600);
	char *seg = shmat(id, NULL, 0);
	memset(seg, 7, 16 * PG);

	int fd = open("/tmp/hvsim-fork_shm.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
	memset(buf, 'x', sizeof(buf));
	write(fd, buf, sizeof(buf));

	pid_t pid = fork();
	if (pid == 0) {
		char *m = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		m[0] = 'y';
		char *seg2 = shmat(id, NULL, SHM_RDONLY);
		char c = seg2[PG];
		shmdt(seg2);
		munmap(m, 3 * PG);
		if (argc > 1) {
			char child[256];
			snprintf(child, sizeof(child), "%s.child", argv[1]);
			dump_maps(child);
		}
		_exit(c == 7 ? 0 : 1);
	}
	waitpid(pid, NULL, 0);
	shmdt(seg);
	shmctl(id, IPC_RMID, NULL);
	close(fd);
	unlink("/tmp/hvsim-fork_shm.dat");
	if (argc > 1)
		dump_maps(argv[1]);
	return 0;
}
