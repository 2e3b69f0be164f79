#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "mapped_files.h"

// A fixed table the signal handler can read without locks or allocation: a slot is claimed by setting its start
// from 0 to 1, filled, then published by storing the real start (release); forgetting stores 0.
enum { slot_count = 4096, path_bytes = 1024 };

struct mapping {
    _Atomic uintptr_t start;
    uintptr_t end;
    char path[path_bytes];
};

static struct mapping mappings[slot_count];
static struct sigaction previous;
static pthread_once_t installed = PTHREAD_ONCE_INIT;

static void write_text(const char *text) {
    size_t length = strlen(text);
    while (length > 0) {
        ssize_t written = write(STDERR_FILENO, text, length);
        if (written <= 0) return;
        text += written;
        length -= (size_t)written;
    }
}

static void write_number(uintptr_t value) {
    char digits[24];
    int at = (int)sizeof digits - 1;
    digits[at] = 0;
    do {
        digits[--at] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0 && at > 0);
    write_text(digits + at);
}

static void report(int signal_number, siginfo_t *info, void *context) {
    int saved_errno = errno;
    // A fault (si_code > 0) has an address; a SIGBUS sent by kill has the sender's pid there instead.
    uintptr_t address = info->si_code > 0 ? (uintptr_t)info->si_addr : 0;
    for (int slot = 0; address != 0 && slot < slot_count; slot++) {
        uintptr_t start = atomic_load_explicit(&mappings[slot].start, memory_order_acquire);
        if (start > 1 && address >= start && address < mappings[slot].end) {
            write_text("keel: reading ");
            write_text(mappings[slot].path);
            write_text(" failed at byte ");
            write_number(address - start);
            write_text(": the file was truncated or replaced while in use, or its storage could not deliver it "
                       "(bus error)\n");
            break;
        }
    }
    errno = saved_errno;
    // The signal goes on as it would have without this handler: to the one before, or the default (death).
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) { previous.sa_sigaction(signal_number, info, context); return; }
    } else if (previous.sa_handler == SIG_IGN && info->si_code <= 0) {
        return;  // A sent SIGBUS was ignored; a fault cannot be (the kernel kills a process that ignores it).
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(signal_number);
        return;
    }
    signal(signal_number, SIG_DFL);
    // Returning runs a faulting read again, which now dies by the default action; a sent signal is sent again, to be
    // delivered (by that action) once this handler returns.
    if (info->si_code <= 0) raise(signal_number);
}

static void install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = report;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &previous);
}

int keel_name_mapping(const void *start, size_t length, const char *path) {
    if (start == NULL || length == 0) return -1;
    pthread_once(&installed, install);
    for (int slot = 0; slot < slot_count; slot++) {
        uintptr_t free_slot = 0;
        if (atomic_compare_exchange_strong(&mappings[slot].start, &free_slot, 1)) {
            mappings[slot].end = (uintptr_t)start + length;
            strncpy(mappings[slot].path, path, path_bytes - 1);
            mappings[slot].path[path_bytes - 1] = 0;
            atomic_store_explicit(&mappings[slot].start, (uintptr_t)start, memory_order_release);
            return slot;
        }
    }
    return -1;
}

void keel_forget_mapping(int slot) {
    if (slot >= 0 && slot < slot_count) atomic_store_explicit(&mappings[slot].start, 0, memory_order_release);
}
