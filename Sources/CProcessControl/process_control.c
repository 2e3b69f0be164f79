#include <sys/prctl.h>
#include "process_control.h"

// prctl is variadic, which Swift cannot call; this names the one use Keel has for it.
int keel_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
