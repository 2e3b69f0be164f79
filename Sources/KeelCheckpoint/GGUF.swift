import Foundation
import KeelCore

/// A metadata value of a GGUF file, typed as the file types it (llama.cpp checks the type of every key it reads:
/// a count stored as `.int32` where it expects `.uint32` is an error there).
public enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32), float32(Float)
    case bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    /// Elements of one type (GGUF has no arrays of arrays); the type is given so that an empty array keeps it.
    case array(GGUFValueType, [GGUFValue])

    /// The type GGUF stores the value as.
    public var type: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .float32: .float32
        case .bool: .bool
        case .string: .string
        case .array: .array
        case .uint64: .uint64
        case .int64: .int64
        case .float64: .float64
        }
    }

    /// The value as an integer, whatever its integer type.
    public var integer: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        case .int64(let v): Int(v)
        default: nil
        }
    }

    /// The value as a floating-point number, whatever its float type.
    public var number: Double? {
        switch self {
        case .float32(let v): Double(v)
        case .float64(let v): v
        default: nil
        }
    }

    public var string: String? { if case .string(let v) = self { v } else { nil } }
}

/// GGUF's value types, with its numbers.
public enum GGUFValueType: UInt32, Sendable {
    case uint8 = 0, int8, uint16, int16, uint32, int32, float32, bool, string, array, uint64, int64, float64
}

/// A tensor of a GGUF file: its name, its dimensions in ggml's order (the first is the length of a row), its ggml
/// type number, and where its bytes are.
public struct GGUFTensor: Equatable, Sendable {
    public let name: String
    public let dimensions: [Int]
    public let type: Int
    /// Offset of its bytes from the start of the data section.
    public let offset: Int
    public let byteCount: Int

    /// Values in all.
    public var count: Int { dimensions.reduce(1, *) }
}

/// The ggml element types GGUF files hold, by number: values per block and bytes per block.
public enum GGMLType {
    private static let layouts: [Int: (name: String, values: Int, bytes: Int)] = [
        0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
        7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
        13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
        26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 30: ("BF16", 1, 2),
    ]

    /// ggml's name for type number `type` ("Q4_K"), or nil when Keel does not know it.
    public static func name(_ type: Int) -> String? { layouts[type]?.name }

    /// The bytes of `dimensions` values of `type`, or nil when the type is unknown or a row is not whole blocks.
    public static func byteCount(type: Int, dimensions: [Int]) -> Int? {
        guard let layout = layouts[type], let row = dimensions.first, row % layout.values == 0 else { return nil }
        return checkedProduct(Array(dimensions.dropFirst()), times: row / layout.values * layout.bytes)
    }
}

/// A GGUF file (version 3, as llama.cpp writes and reads it): the header, typed metadata in order, tensor
/// descriptions, then the tensors' bytes, each at a multiple of the alignment (`general.alignment`, default 32)
/// from the start of the data section, packed in order.
///
/// Reading maps the file and checks everything a later read relies on — the magic number, the version, that
/// every count and length fits in the file, that each tensor's type is known and its bytes lie where the packed
/// layout puts them — so a damaged or foreign file is one error naming the file and what is wrong.
public struct GGUFFile: Sendable {
    public static let magic: UInt32 = 0x4655_4747  // "GGUF"
    public static let defaultAlignment = 32

    public var version: UInt32 = 3
    /// The key-value metadata in file order (llama.cpp writes `general.architecture` first).
    public var metadata: [(key: String, value: GGUFValue)] = []
    public private(set) var tensors: [GGUFTensor] = []
    /// Each tensor's bytes, by name.
    private var tensorBytes: [String: Data] = [:]

    public init() {}

    /// The metadata value of `key`, if present.
    public subscript(key: String) -> GGUFValue? { metadata.first { $0.key == key }?.value }

    /// The bytes of tensor `name` (of the file's mapping when read).
    public func bytes(of name: String) -> Data? { tensorBytes[name] }

    /// Tells the operating system that tensor `name`'s bytes will not be read for a while (a copy of them is in
    /// use): the file's pages that lie wholly inside them leave this process's memory (MADV_PAGEOUT: reclaimed, and
    /// read from the file again if ever touched — nothing is lost, whatever memory the bytes are in).
    public func releasePages(of name: String) {
        tensorBytes[name]?.withUnsafeBytes { raw in
            guard let start = raw.baseAddress else { return }
            let page = UInt(sysconf(Int32(_SC_PAGESIZE))), address = UInt(bitPattern: start)
            let first = (address + page - 1) & ~(page - 1), end = (address + UInt(raw.count)) & ~(page - 1)
            guard end > first else { return }
            _ = madvise(UnsafeMutableRawPointer(bitPattern: first), Int(end - first), 21 /* MADV_PAGEOUT */)
        }
    }

    /// The alignment of the data: `general.alignment` when the file sets it.
    public var alignment: Int {
        if case .uint32(let value)? = self["general.alignment"], value > 0 { return Int(value) }
        return Self.defaultAlignment
    }

    /// Appends a tensor of ggml type number `type` with `dimensions` in ggml's order; `bytes` must be its size.
    public mutating func append(name: String, type: Int, dimensions: [Int], bytes: Data) throws {
        guard let count = GGMLType.byteCount(type: type, dimensions: dimensions) else {
            throw KeelError("tensor \(name): ggml type \(type) with dimensions \(dimensions) is not something GGUF can hold")
        }
        guard count == bytes.count else { throw KeelError("tensor \(name): \(bytes.count) bytes for \(count)") }
        guard tensorBytes[name] == nil else { throw KeelError("tensor \(name) is already in the file") }
        let offset = tensors.last.map { Self.padded($0.offset + $0.byteCount, to: alignment) } ?? 0
        tensors.append(GGUFTensor(name: name, dimensions: dimensions, type: type, offset: offset, byteCount: count))
        tensorBytes[name] = bytes
    }

    static func padded(_ value: Int, to alignment: Int) -> Int { (value + alignment - 1) / alignment * alignment }

    // MARK: - Writing

    /// Writes the file atomically to `url`: the header, metadata and tensor descriptions, padding to the
    /// alignment, then each tensor's bytes followed by padding to the alignment.
    public func write(to url: URL) throws {
        var head = Data()
        head.appendLittleEndian(Self.magic)
        head.appendLittleEndian(version)
        head.appendLittleEndian(UInt64(tensors.count))
        head.appendLittleEndian(UInt64(metadata.count))
        for (key, value) in metadata {
            head.appendGGUFString(key)
            head.appendLittleEndian(value.type.rawValue)
            try head.appendGGUFValue(value, key: key)
        }
        // The offsets are those of the packed layout, which `append` gave; the alignment may have been set since.
        var offset = 0
        for tensor in tensors {
            head.appendGGUFString(tensor.name)
            head.appendLittleEndian(UInt32(tensor.dimensions.count))
            for dimension in tensor.dimensions { head.appendLittleEndian(UInt64(dimension)) }
            head.appendLittleEndian(UInt32(tensor.type))
            head.appendLittleEndian(UInt64(offset))
            offset = Self.padded(offset + tensor.byteCount, to: alignment)
        }
        head.append(contentsOf: [UInt8](repeating: 0, count: Self.padded(head.count, to: alignment) - head.count))
        try AtomicFile.write(to: url) { handle in
            try handle.write(contentsOf: head)
            for tensor in tensors {
                try handle.write(contentsOf: tensorBytes[tensor.name]!)
                let padding = Self.padded(tensor.byteCount, to: alignment) - tensor.byteCount
                if padding > 0 { try handle.write(contentsOf: Data(count: padding)) }
            }
        }
    }

    // MARK: - Reading

    /// Reads the GGUF file at `url` (mapped: tensor bytes are read from the disk when used).
    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw KeelError("\(url.path): cannot read (\(AtomicFile.systemReason(error)))")
        }
        // Products read the tensors where they lie in the mapping: ask for the file ahead, and fill the mapping's page
        // tables now (MADV_POPULATE_READ, Linux 5.14; an older kernel refuses it and pages come in on first use), so
        // that the first prompt does not take a fault for every page it reads — llama.cpp maps with MAP_POPULATE.
        data.withUnsafeBytes { raw in
            guard let start = raw.baseAddress, raw.count > 0 else { return }
            let page = UInt(sysconf(Int32(_SC_PAGESIZE))), address = UInt(bitPattern: start)
            let aligned = UnsafeMutableRawPointer(bitPattern: address & ~(page - 1)), length = raw.count + Int(address & (page - 1))
            _ = madvise(aligned, length, MADV_WILLNEED)
            _ = madvise(aligned, length, 22 /* MADV_POPULATE_READ */)
        }
        var reader = GGUFByteReader(data: data, path: url.path)
        let magic: UInt32 = try reader.integer("the magic number")
        guard magic == Self.magic else { throw reader.error("not a GGUF file (it does not start with \"GGUF\")") }
        version = try reader.integer("the version")
        guard version == 2 || version == 3 else {
            throw reader.error("GGUF version \(version) (version & 0xFFFF == 0 means a big-endian file); Keel reads versions 2 and 3")
        }
        // Counts are not trusted for allocation: each entry is read, checked against the file's end, before the next.
        let tensorCount: UInt64 = try reader.integer("the tensor count")
        let keyCount: UInt64 = try reader.integer("the metadata count")
        var keys = Set<String>()
        for _ in 0..<keyCount {
            let key = try reader.string("a metadata key")
            guard keys.insert(key).inserted else { throw reader.error("metadata key \(key) appears twice") }
            let raw: UInt32 = try reader.integer("the type of \(key)")
            guard let type = GGUFValueType(rawValue: raw) else { throw reader.error("metadata \(key) has unknown type \(raw)") }
            metadata.append((key, try reader.value(of: type, key: key)))
        }
        var infos: [(name: String, dimensions: [Int], type: Int, offset: UInt64)] = []
        for _ in 0..<tensorCount {
            let name = try reader.string("a tensor name")
            let dimensionCount: UInt32 = try reader.integer("the dimension count of \(name)")
            guard (1...4).contains(dimensionCount) else { throw reader.error("tensor \(name) has \(dimensionCount) dimensions (1 to 4)") }
            var dimensions: [Int] = []
            for _ in 0..<dimensionCount {
                let dimension: UInt64 = try reader.integer("a dimension of \(name)")
                guard dimension > 0, dimension < 1 << 40 else { throw reader.error("tensor \(name) has a dimension of \(dimension)") }
                dimensions.append(Int(dimension))
            }
            let type: UInt32 = try reader.integer("the type of \(name)")
            let offset: UInt64 = try reader.integer("the offset of \(name)")
            infos.append((name, dimensions, Int(type), offset))
        }
        // Tensors are read as floats and halves where they lie: their offsets must keep that alignment. As in
        // gguf.cpp, the alignment is a 32-bit count and a power of two.
        if let value = self["general.alignment"] {
            guard case .uint32(let count) = value, count > 0 else {
                throw reader.error("general.alignment is \(value), not a uint32 above 0")
            }
        }
        guard alignment % 8 == 0, alignment & (alignment - 1) == 0 else {
            throw reader.error("general.alignment is \(alignment), not a power of two of at least 8")
        }
        let dataStart = Self.padded(reader.position, to: alignment)
        var expected = 0
        for info in infos {
            guard let count = GGMLType.byteCount(type: info.type, dimensions: info.dimensions) else {
                throw reader.error("tensor \(info.name) has ggml type \(info.type) and dimensions \(info.dimensions), which Keel cannot size")
            }
            guard info.offset == UInt64(expected) else {
                throw reader.error("tensor \(info.name) is at offset \(info.offset) of the data, not \(expected) where the packed layout puts it")
            }
            // Compared by subtraction: a damaged header's byte count may be near Int.max, and the sum would trap.
            guard dataStart + expected <= data.count, count <= data.count - dataStart - expected else {
                throw reader.error("tensor \(info.name) (\(count) bytes at byte \(dataStart + expected)) ends past the end of the file (\(data.count) bytes)")
            }
            guard tensorBytes[info.name] == nil else { throw reader.error("tensor \(info.name) appears twice") }
            tensors.append(GGUFTensor(name: info.name, dimensions: info.dimensions, type: info.type, offset: expected, byteCount: count))
            // A slice shares the mapping: the tensor's pages are read only when used.
            tensorBytes[info.name] = data[(dataStart + expected)..<(dataStart + expected + count)]
            expected = Self.padded(expected + count, to: alignment)
        }
    }
}

/// Little-endian reading of a GGUF file's header, every read checked against the file's end.
private struct GGUFByteReader {
    let data: Data
    let path: String
    var position = 0
    /// The longest metadata array read: 2²⁴ elements (Llama 3's vocabulary, the largest common one, has 128,256 tokens
    /// and 280,147 merges).
    static let mostArrayElements: UInt64 = 1 << 24

    init(data: Data, path: String) {
        self.data = data
        self.path = path
    }

    func error(_ message: String) -> KeelError { KeelError("\(path): \(message)") }

    mutating func bytes(_ count: Int, _ what: String) throws -> Data {
        guard count >= 0, count <= data.count - position else {
            throw error("the file ends inside \(what) (byte \(position) of \(data.count))")
        }
        defer { position += count }
        return data.subdata(in: position..<(position + count))
    }

    mutating func integer<T: FixedWidthInteger>(_ what: String) throws -> T {
        let raw = try bytes(MemoryLayout<T>.size, what)
        return T(littleEndian: raw.withUnsafeBytes { $0.loadUnaligned(as: T.self) })
    }

    mutating func string(_ what: String) throws -> String {
        let length: UInt64 = try integer(what)
        guard length <= UInt64(data.count - position) else { throw error("the file ends inside \(what) (a string of \(length) bytes)") }
        let raw = try bytes(Int(length), what)
        guard let text = String(data: raw, encoding: .utf8) else { throw error("\(what) is not UTF-8") }
        return text
    }

    mutating func value(of type: GGUFValueType, key: String) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try integer(key))
        case .int8: return .int8(try integer(key))
        case .uint16: return .uint16(try integer(key))
        case .int16: return .int16(try integer(key))
        case .uint32: return .uint32(try integer(key))
        case .int32: return .int32(try integer(key))
        case .float32: return .float32(Float(bitPattern: try integer(key)))
        case .bool:
            let byte: UInt8 = try integer(key)
            guard byte <= 1 else { throw error("metadata \(key) is a bool of value \(byte)") }
            return .bool(byte == 1)
        case .string: return .string(try string("the value of \(key)"))
        case .uint64: return .uint64(try integer(key))
        case .int64: return .int64(try integer(key))
        case .float64: return .float64(Double(bitPattern: try integer(key)))
        case .array:
            let raw: UInt32 = try integer("the element type of \(key)")
            guard let element = GGUFValueType(rawValue: raw), element != .array else {
                throw error("metadata \(key) is an array of type \(raw), which GGUF does not allow")
            }
            let count: UInt64 = try integer("the length of \(key)")
            // Each element takes at least its fixed size in the file (a string, its 8-byte length): a count the rest
            // of the file cannot hold is refused before any memory is reserved for it.
            let smallest: UInt64 = switch element {
            case .uint8, .int8, .bool: 1
            case .uint16, .int16: 2
            case .uint32, .int32, .float32: 4
            case .uint64, .int64, .float64, .string, .array: 8
            }
            guard count <= UInt64(data.count - position) / smallest else {
                throw error("metadata \(key) claims \(count) elements, more than the file holds")
            }
            // Each element is held as a value of its own (tens of bytes): a gigabyte of one-byte elements would take
            // tens of gigabytes. The largest arrays real files hold, a vocabulary's tokens and merges, are under a
            // million long.
            guard count <= Self.mostArrayElements else {
                throw error("metadata \(key) holds \(count) elements, more than the \(Self.mostArrayElements) Keel reads in an array")
            }
            var elements: [GGUFValue] = []
            elements.reserveCapacity(Int(count))
            for _ in 0..<count { elements.append(try value(of: element, key: key)) }
            return .array(element, elements)
        }
    }
}

private extension Data {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    mutating func appendGGUFString(_ text: String) {
        appendLittleEndian(UInt64(text.utf8.count))
        append(contentsOf: Array(text.utf8))
    }

    mutating func appendGGUFValue(_ value: GGUFValue, key: String) throws {
        switch value {
        case .uint8(let v): appendLittleEndian(v)
        case .int8(let v): appendLittleEndian(v)
        case .uint16(let v): appendLittleEndian(v)
        case .int16(let v): appendLittleEndian(v)
        case .uint32(let v): appendLittleEndian(v)
        case .int32(let v): appendLittleEndian(v)
        case .float32(let v): appendLittleEndian(v.bitPattern)
        case .bool(let v): appendLittleEndian(UInt8(v ? 1 : 0))
        case .string(let v): appendGGUFString(v)
        case .uint64(let v): appendLittleEndian(v)
        case .int64(let v): appendLittleEndian(v)
        case .float64(let v): appendLittleEndian(v.bitPattern)
        case .array(let element, let elements):
            guard element != .array, elements.allSatisfy({ $0.type == element }) else {
                throw KeelError("metadata \(key): an array's elements must all be of its element type, and not arrays")
            }
            appendLittleEndian(element.rawValue)
            appendLittleEndian(UInt64(elements.count))
            for element in elements { try appendGGUFValue(element, key: key) }
        }
    }
}
