/* shm_touch: the SysV cases of measure_shmem_swap.py.
 * shm_touch MIB LOCK ANON_MIB: step "written": shmget(IPC_PRIVATE, MIB MiB), shmat,
 * SHM_LOCK if LOCK, write a distinct non-zero word to every page; step "anon": map
 * ANON_MIB MiB of private anonymous memory and write every page (skipped if 0); step
 * "read": read one word of every segment page; step "removed": shmdt and IPC_RMID.
 * After each step it prints the step's name and waits for a line on stdin (the driver
 * samples the counters). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

static void step(const char *name)
{
	char line[64];
	printf("%s\n", name); fflush(stdout);
	if (!fgets(line, sizeof line, stdin)) exit(1);
}

int main(int argc, char **argv)
{
	size_t size = (size_t)atol(argv[1]) << 20;
	int lock = atoi(argv[2]);
	size_t anon = (size_t)atol(argv[3]) << 20;
	volatile unsigned long sum = 0;
	int id = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
	if (id < 0) { perror("shmget"); return 1; }
	char *p = shmat(id, NULL, 0);
	if (p == (void *)-1) { perror("shmat"); return 1; }
	if (lock && shmctl(id, SHM_LOCK, NULL)) { perror("SHM_LOCK"); return 1; }
	for (size_t off = 0; off < size; off += 4096)
		*(unsigned long *)(p + off) = off + 1;
	step("written");
	if (anon) {
		char *a = mmap(NULL, anon, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (a == MAP_FAILED) { perror("mmap"); return 1; }
		madvise(a, anon, MADV_NOHUGEPAGE);
		for (size_t off = 0; off < anon; off += 4096)
			*(unsigned long *)(a + off) = off + 1;
		step("anon");
	}
	for (size_t off = 0; off < size; off += 4096)
		sum += *(unsigned long *)(p + off);
	step("read");
	shmdt(p);
	shmctl(id, IPC_RMID, NULL);
	step("removed");
	return sum == 0;
}
