#include <sys/prctl.h>
#include <unistd.h>
#include "process_control.h"

// prctl is variadic, which Swift cannot call; this names the one use Keel has for it.
int keel_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int keel_die_with_parent(int signal_number, pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0) return -1;
    // The parent may have died before the request took effect: then no signal will come.
    return getppid() == parent ? 0 : -1;
}
