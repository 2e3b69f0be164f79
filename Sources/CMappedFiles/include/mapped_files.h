#ifndef KEEL_MAPPED_FILES_H
#define KEEL_MAPPED_FILES_H

#include <stddef.h>

/// Remembers that `length` bytes at `start` map the file at `path`, so that a read of them that fails (SIGBUS: the
/// file was truncated or replaced while mapped, or a network file system could not deliver a page) is reported on
/// standard error naming the file and the offset before the process dies as it would have. The first call installs
/// the SIGBUS handler, which then hands the signal to whatever handler was there before (the Swift runtime's
/// backtracer). Returns a slot for `keel_forget_mapping`, or -1 when every slot is taken (the mapping then goes
/// unnamed; nothing else changes).
int keel_name_mapping(const void *start, size_t length, const char *path);

/// Forgets the mapping of `slot` (before it is unmapped). A slot of -1 is ignored.
void keel_forget_mapping(int slot);

#endif
