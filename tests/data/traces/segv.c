/* segv: writes to a page it has just unmapped; the kernel kills it with SIGSEGV
 * (SEGV_MAPERR), so the trace ends in "--- SIGSEGV {...} ---" and "+++ killed by ... +++". */
#include <sys/mman.h>

int main(void)
{
	volatile char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	p[0] = 1;
	munmap((void *)p, 4096);
	p[0] = 2;
	return 0;
}
