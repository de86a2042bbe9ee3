/*
 * LD_PRELOAD shim of the power-cut test (crates/store/tests/crash.rs): it records, in the
 * file named by KTWIN_SYNC_LOG, every write to a regular file under KTWIN_SYNC_LOG_DIR (before
 * the write: what may have reached the page cache) and every completed fsync/fdatasync of such
 * a file (with its size then: what a power cut cannot take back). After a SIGKILL the test
 * replays the log and discards, file by file, what was written after its last sync: a power
 * cut with an empty disk cache.
 *
 * Why C and a preload: a SIGKILL keeps the page cache, so only the store's own system calls
 * tell what was made durable; fjall has no pluggable file system, FUSE needs privileges CI
 * machines lack, and `cc` is already on every machine that links Rust on Linux. The test
 * compiles this file into its target directory.
 *
 * Lines: "W <dev> <ino> <offset> <length>" and "S <dev> <ino> <size>", each one write(2) on
 * an O_APPEND descriptor (atomic, and kept by the page cache when the process is killed).
 * A write is logged before it is made and a sync after it returned, so a write still running
 * on another thread when a sync of the same file returns counts as synced: that errs towards
 * keeping data, never towards a false failure (fjall writes and syncs its journal under one
 * lock, so it does not happen there).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int log_fd = -1;
static const char *watched_dir;

__attribute__((constructor)) static void open_log(void) {
    const char *log = getenv("KTWIN_SYNC_LOG");
    watched_dir = getenv("KTWIN_SYNC_LOG_DIR");
    if (log != NULL && watched_dir != NULL) {
        log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
}

/* Whether fd is a regular file under the watched directory; fills st. */
static int watched(int fd, struct stat *st) {
    char link[64], path[PATH_MAX];
    if (log_fd < 0 || fd == log_fd || fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        return 0;
    }
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) {
        return 0;
    }
    path[n] = '\0';
    return strncmp(path, watched_dir, strlen(watched_dir)) == 0;
}

static void record(const char *line, int length) {
    /* The raw system call: this shim's own write() would log itself. */
    syscall(SYS_write, log_fd, line, (size_t)length);
}

static void record_write(int fd, off_t offset, size_t length) {
    struct stat st;
    if (!watched(fd, &st)) {
        return;
    }
    if (offset < 0) { /* write(2): at the file's end or at the descriptor's position */
        offset = (fcntl(fd, F_GETFL) & O_APPEND) ? st.st_size : lseek(fd, 0, SEEK_CUR);
    }
    char line[128];
    int n = snprintf(line, sizeof line, "W %lu %lu %lld %zu\n", (unsigned long)st.st_dev,
                     (unsigned long)st.st_ino, (long long)offset, length);
    record(line, n);
}

static void record_sync(int fd) {
    struct stat st;
    if (!watched(fd, &st)) {
        return;
    }
    char line[128];
    int n = snprintf(line, sizeof line, "S %lu %lu %lld\n", (unsigned long)st.st_dev,
                     (unsigned long)st.st_ino, (long long)st.st_size);
    record(line, n);
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

static size_t total(const struct iovec *iov, int count) {
    size_t sum = 0;
    for (int i = 0; i < count; i++) {
        sum += iov[i].iov_len;
    }
    return sum;
}

ssize_t write(int fd, const void *buf, size_t count) {
    record_write(fd, -1, count);
    return REAL(write)(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    record_write(fd, offset, count);
    return REAL(pwrite)(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    record_write(fd, offset, count);
    return REAL(pwrite64)(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    record_write(fd, -1, total(iov, iovcnt));
    return REAL(writev)(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    record_write(fd, offset, total(iov, iovcnt));
    return REAL(pwritev)(fd, iov, iovcnt, offset);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off64_t offset) {
    record_write(fd, offset, total(iov, iovcnt));
    return REAL(pwritev64)(fd, iov, iovcnt, offset);
}

int fsync(int fd) {
    int result = REAL(fsync)(fd);
    if (result == 0) {
        record_sync(fd);
    }
    return result;
}

int fdatasync(int fd) {
    int result = REAL(fdatasync)(fd);
    if (result == 0) {
        record_sync(fd);
    }
    return result;
}
