/* static_true: a statically linked program that does nothing (gcc -static): the trace
 * holds only what a static glibc's start-up does itself (brk heap for the TLS, RELRO). */
int main(void)
{
	return 0;
}
