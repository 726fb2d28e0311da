/* fork_shm: the parent creates and attaches a System V shared memory segment, writes a
 * data file, and forks; the child maps the file (shared), attaches the segment a second
 * time, detaches both and exits; the parent waits, detaches and removes the segment. */
#include <fcntl.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096

int main(void)
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
		_exit(c == 7 ? 0 : 1);
	}
	waitpid(pid, NULL, 0);
	shmdt(seg);
	shmctl(id, IPC_RMID, NULL);
	close(fd);
	unlink("/tmp/hvsim-fork_shm.dat");
	return 0;
}
