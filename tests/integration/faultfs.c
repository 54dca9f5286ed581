/*
 * faultfs.c - an LD_PRELOAD shim that makes writes to LMDB data files
 * fail with ENOSPC while the file named by $PARLEY_FAULT_DISK_FULL exists,
 * so tests can fill "the disk" of a running broker without privileges and
 * empty it again. Only files whose path ends in ".mdb" are affected.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off);
ssize_t write(int fd, const void *buf, size_t n);
ssize_t writev(int fd, const struct iovec *iov, int cnt);
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off);

static int disk_full(int fd)
{
	const char *flag = getenv("PARLEY_FAULT_DISK_FULL");
	if (flag == NULL || access(flag, F_OK) != 0)
		return 0;
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 4)
		return 0;
	path[n] = '\0';
	return strcmp(path + n - 4, ".mdb") == 0;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (disk_full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(pwrite)(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	if (disk_full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(pwrite64)(fd, buf, n, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	if (disk_full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(pwritev)(fd, iov, cnt, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	if (disk_full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(write)(fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	if (disk_full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(writev)(fd, iov, cnt);
}
