#ifndef KEEL_PROCESS_CONTROL_H
#define KEEL_PROCESS_CONTROL_H

/// Makes this process the reaper of its orphaned descendants (Linux's PR_SET_CHILD_SUBREAPER), so that helpers a
/// killed child leaves behind become this process's children and can be waited for, instead of lingering as
/// zombies where PID 1 does not reap (containers without an init). Returns 0, or -1 with errno set.
#include <sys/types.h>

int keel_become_subreaper(void);

/// Asks the kernel to send this process `signal_number` when its parent (the thread that started it) ends; returns 0,
/// or -1 when that failed or `parent` is no longer the parent (it already ended).
int keel_die_with_parent(int signal_number, pid_t parent);

#endif
