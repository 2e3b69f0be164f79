import Foundation
import KeelCore

/// An open-addressing hash map from byte strings to `Int32`, without allocating per lookup.
///
/// Keys are stored once in a byte arena; a lookup hashes the probe bytes (XXH64) and compares them with the
/// stored key only when the 64-bit hashes match.
struct ByteStringTable: Sendable {
    /// One entry; hash 0 marks an empty slot. One array of these, not an array per field, so a probe touches
    /// one cache line before the key's bytes (building cl100k's pair table makes 360,000 probes).
    private struct Slot {
        var hash: UInt64 = 0
        var keyStart: Int32 = 0
        var keyLength: Int32 = 0
        var value: Int32 = -1
    }

    private var slots: [Slot]
    private var arena: [UInt8] = []
    private var mask: Int
    private(set) var count = 0

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Slot](repeating: Slot(), count: size)
        mask = size - 1
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH64.hash(bytes) | 1  // never 0, which marks an empty slot
    }

    /// The value stored for `key`, if any.
    func value(for key: UnsafeRawBufferPointer) -> Int32? {
        let h = ByteStringTable.hash(key)
        var index = Int(truncatingIfNeeded: h) & mask
        return slots.withUnsafeBufferPointer { slots in
            while slots[index].hash != 0 {
                let slot = slots[index]
                if slot.hash == h, Int(slot.keyLength) == key.count, matches(slot, key) { return slot.value }
                index = (index + 1) & mask
            }
            return nil
        }
    }

    /// Stores `value` for `key`, replacing any earlier value. Grows when half full.
    mutating func insert(_ key: UnsafeRawBufferPointer, value: Int32) {
        if (count + 1) * 2 > slots.count { grow() }
        let h = ByteStringTable.hash(key)
        var index = Int(truncatingIfNeeded: h) & mask
        while slots[index].hash != 0 {
            let slot = slots[index]
            if slot.hash == h, Int(slot.keyLength) == key.count, matches(slot, key) {
                slots[index].value = value
                return
            }
            index = (index + 1) & mask
        }
        slots[index] = Slot(hash: h, keyStart: Int32(arena.count), keyLength: Int32(key.count), value: value)
        arena.append(contentsOf: key)
        count += 1
    }

    /// A copy with storage of its own (see `BPEEncoder.init` for why that matters).
    func copied() -> ByteStringTable {
        var copy = self
        copy.slots = slots.map { $0 }
        copy.arena = arena.map { $0 }
        return copy
    }

    /// Calls `body` with every key and its value, in no particular order.
    func forEach(_ body: (UnsafeRawBufferPointer, Int32) -> Void) {
        arena.withUnsafeBytes { stored in
            for slot in slots where slot.hash != 0 {
                body(UnsafeRawBufferPointer(rebasing: stored[Int(slot.keyStart)..<Int(slot.keyStart + slot.keyLength)]), slot.value)
            }
        }
    }

    private func matches(_ slot: Slot, _ key: UnsafeRawBufferPointer) -> Bool {
        guard key.count > 0 else { return true }
        return arena.withUnsafeBytes { stored in
            memcmp(stored.baseAddress! + Int(slot.keyStart), key.baseAddress!, key.count) == 0
        }
    }

    private mutating func grow() {
        var bigger = ByteStringTable(capacity: slots.count)
        forEach { key, value in bigger.insert(key, value: value) }
        self = bigger
    }
}

/// An open-addressing hash map from a pair of token ids to the merge that joins them.
struct PairTable: Sendable {
    /// A merge: its priority (lower merges first) and the token it produces.
    struct Merge: Sendable, Equatable {
        let rank: Int32
        let token: Int32
    }

    private var keys: [UInt64]
    private var merges: [Merge]
    private let mask: Int
    private(set) var count = 0

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: .max, count: size)
        merges = [Merge](repeating: Merge(rank: 0, token: 0), count: size)
        mask = size - 1
    }

    @inline(__always)
    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private func slot(for key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask
    }

    /// A copy with storage of its own (see `BPEEncoder.init` for why that matters).
    func copied() -> PairTable {
        var copy = self
        copy.keys = keys.map { $0 }
        copy.merges = merges.map { $0 }
        return copy
    }

    /// The merge joining `left` and `right`, if they merge.
    @inline(__always)
    func merge(_ left: Int32, _ right: Int32) -> Merge? {
        let k = PairTable.key(left, right)
        var s = slot(for: k)
        while keys[s] != .max {
            if keys[s] == k { return merges[s] }
            s = (s + 1) & mask
        }
        return nil
    }

    /// Records a merge; an existing entry for the pair is kept if its rank is lower.
    mutating func insert(_ left: Int32, _ right: Int32, _ merge: Merge) {
        precondition((count + 1) * 2 <= keys.count, "PairTable capacity exceeded")
        let k = PairTable.key(left, right)
        var s = slot(for: k)
        while keys[s] != .max {
            if keys[s] == k {
                if merge.rank < merges[s].rank { merges[s] = merge }
                return
            }
            s = (s + 1) & mask
        }
        keys[s] = k
        merges[s] = merge
        count += 1
    }
}
