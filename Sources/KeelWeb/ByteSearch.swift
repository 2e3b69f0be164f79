import Glibc

/// Whether `haystack` contains `needle`, as bytes: memchr finds each candidate first byte, memcmp checks the rest.
/// Used where Foundation's string search would cost more than the work around it (class names of every element,
/// megabytes of bundled script).
func containsBytes(_ haystack: UnsafeRawBufferPointer, _ needle: UnsafeRawBufferPointer) -> Bool {
    guard let first = needle.first else { return true }
    guard let base = haystack.baseAddress, needle.count <= haystack.count else { return false }
    var start = 0
    while start + needle.count <= haystack.count,
          let hit = memchr(base + start, Int32(first), haystack.count - needle.count + 1 - start) {
        let index = UnsafeRawPointer(hit) - base
        if memcmp(hit, needle.baseAddress!, needle.count) == 0 { return true }
        start = index + 1
    }
    return false
}
