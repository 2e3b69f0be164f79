#ifndef KEEL_PROCESS_CONTROL_H
#define KEEL_PROCESS_CONTROL_H

/// Makes this process the reaper of its orphaned descendants (Linux's PR_SET_CHILD_SUBREAPER), so that helpers a
/// killed child leaves behind become this process's children and can be waited for, instead of lingering as
/// zombies where PID 1 does not reap (containers without an init). Returns 0, or -1 with errno set.
int keel_become_subreaper(void);

#endif
