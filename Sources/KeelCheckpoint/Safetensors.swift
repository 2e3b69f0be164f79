import Foundation
import KeelCore

/// Element types Keel reads and writes in safetensors files.
public enum TensorDType: String, Sendable, Codable {
    case f32 = "F32", f64 = "F64", i32 = "I32", i64 = "I64", u8 = "U8"
    /// Half precision and bfloat16, as Hugging Face models are often saved; read (converted to F32), not written.
    case f16 = "F16", bf16 = "BF16"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .u8: return 1
        case .f16, .bf16: return 2
        case .f32, .i32: return 4
        case .f64, .i64: return 8
        }
    }
}

/// One tensor to write: its bytes must stay valid until `Safetensors.write` returns.
public struct TensorSlice {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer

    public init(name: String, dtype: TensorDType, shape: [Int], bytes: UnsafeRawBufferPointer) {
        precondition(shape.reduce(1, *) * dtype.size == bytes.count, "\(name): shape does not match byte count")
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// A float32 tensor viewing `count` floats at `pointer`.
    public init(name: String, shape: [Int], floats pointer: UnsafePointer<Float>) {
        self.init(name: name, dtype: .f32, shape: shape,
                  bytes: UnsafeRawBufferPointer(start: pointer, count: shape.reduce(1, *) * 4))
    }
}

/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping names to dtype,
/// shape and byte range, then the raw little-endian data. Loads in PyTorch and Hugging Face unchanged.
public enum Safetensors {
    /// Writes `tensors` atomically to `url`, in the given order, with string `metadata`.
    public static func write(_ tensors: [TensorSlice], metadata: [String: String] = [:], to url: URL) throws {
        try AtomicFile.write(to: url) { try write(tensors, metadata: metadata, to: $0) }
    }

    /// The same, to an open file.
    public static func write(_ tensors: [TensorSlice], metadata: [String: String] = [:], to handle: FileHandle) throws {
        try handle.write(contentsOf: header(tensors, metadata: metadata))
        for tensor in tensors where tensor.bytes.count > 0 {
            try handle.write(contentsOf: Data(
                bytesNoCopy: UnsafeMutableRawPointer(mutating: tensor.bytes.baseAddress!),
                count: tensor.bytes.count, deallocator: .none))
        }
    }

    /// The bytes of a file of `tensors`, for a file written with others (a checkpoint's extras).
    public static func contents(_ tensors: [TensorSlice], metadata: [String: String] = [:]) throws -> Data {
        var contents = try header(tensors, metadata: metadata)
        for tensor in tensors { contents.append(contentsOf: tensor.bytes) }
        return contents
    }

    /// The header's length and the header, padded with spaces so the data starts 8-byte aligned, as the reference
    /// implementation pads it.
    private static func header(_ tensors: [TensorSlice], metadata: [String: String]) throws -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        for tensor in tensors {
            header[tensor.name] = ["dtype": tensor.dtype.rawValue, "shape": tensor.shape,
                                   "data_offsets": [offset, offset + tensor.bytes.count]] as [String: Any]
            offset += tensor.bytes.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var length = UInt64(json.count).littleEndian
        return Data(bytes: &length, count: 8) + json
    }
}

/// A safetensors file opened for reading (memory-mapped), with its header validated.
public struct SafetensorsFile: @unchecked Sendable {
    /// A tensor's description from the header.
    public struct Entry: Sendable, Equatable {
        public let dtype: TensorDType
        public let shape: [Int]
        public let range: Range<Int>
    }

    public let url: URL
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    /// Opens and validates `url`: every byte range must lie inside the file and match its shape.
    public init(url: URL) throws {
        self.url = url
        let path = url.path
        guard FileManager.default.fileExists(atPath: path) else { throw KeelError("\(path): no such file") }
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw KeelError("\(path): cannot read (\(error.localizedDescription))")
        }
        guard data.count >= 8 else { throw KeelError("\(path): truncated safetensors file (\(data.count) bytes)") }
        let headerLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= UInt64(data.count - 8), headerLength < 100_000_000 else {
            throw KeelError("\(path): truncated or not a safetensors file (header of \(headerLength) bytes, file of \(data.count))")
        }
        dataStart = 8 + Int(headerLength)
        let headerData = data.subdata(in: 8..<dataStart)
        guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw KeelError("\(path): safetensors header is not a JSON object")
        }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        let available = data.count - dataStart
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = value as? [String: String] ?? [:]
                continue
            }
            guard let object = value as? [String: Any], let dtypeName = object["dtype"] as? String,
                  let shape = object["shape"] as? [Int], let offsets = object["data_offsets"] as? [Int],
                  offsets.count == 2
            else { throw KeelError("\(path): malformed header entry for tensor '\(name)'") }
            guard let dtype = TensorDType(rawValue: dtypeName) else {
                throw KeelError("\(path): tensor '\(name)' has unsupported dtype \(dtypeName)")
            }
            let begin = offsets[0], end = offsets[1]
            guard begin >= 0, end >= begin, shape.allSatisfy({ $0 >= 0 }) else {
                throw KeelError("\(path): tensor '\(name)' has invalid offsets or shape")
            }
            guard end <= available else {
                throw KeelError("\(path): truncated: tensor '\(name)' ends at byte \(end) of data but the file holds \(available)")
            }
            guard let needed = checkedProduct(shape, times: dtype.size) else { throw KeelError("\(path): tensor '\(name)' has shape \(shape), too large for any file") }
            guard end - begin == needed else {
                throw KeelError("\(path): tensor '\(name)' has \(end - begin) bytes but shape \(shape) needs \(needed)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: begin..<end)
        }
        // As the safetensors library validates a file: the tensors tile the data from its first byte to its last, so
        // no two names share bytes and nothing lies between or after them.
        var next = 0
        for (name, entry) in entries.sorted(by: { ($0.value.range.lowerBound, $0.value.range.upperBound, $0.key) < ($1.value.range.lowerBound, $1.value.range.upperBound, $1.key) }) {
            guard entry.range.lowerBound == next else {
                throw KeelError("\(path): tensor '\(name)' starts at byte \(entry.range.lowerBound) of data, not \(next) where the tensor before it ends"
                                + (entry.range.lowerBound < next ? " (two tensors share bytes)" : ""))
            }
            next = entry.range.upperBound
        }
        guard next == available else {
            throw KeelError("\(path): the data holds \(available - next) bytes after its last tensor")
        }
        self.entries = entries
        self.metadata = metadata
    }

    /// The entry called `name`, or an error naming the file and tensor.
    public func entry(_ name: String) throws -> Entry {
        guard let entry = entries[name] else { throw KeelError("\(url.path): missing tensor '\(name)'") }
        return entry
    }

    /// Calls `body` with the raw bytes of tensor `name`.
    public func withBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let entry = try entry(name)
        return try data.withUnsafeBytes { raw in
            try body(UnsafeRawBufferPointer(rebasing: raw[(dataStart + entry.range.lowerBound)..<(dataStart + entry.range.upperBound)]))
        }
    }

    /// Copies float32 tensor `name`, which must have `shape`, to `destination`; with `elements`, only that span
    /// of its flattened values (a ZeRO shard of optimizer state).
    public func copyFloats(
        _ name: String, shape: [Int], elements: Range<Int>? = nil, to destination: UnsafeMutablePointer<Float>
    ) throws {
        let entry = try entry(name)
        guard entry.dtype == .f32, entry.shape == shape else {
            throw KeelError("\(url.path): tensor '\(name)' is \(entry.dtype.rawValue) \(entry.shape), expected F32 \(shape)")
        }
        let span = elements ?? 0..<shape.reduce(1, *)
        try withBytes(of: name) { bytes in
            UnsafeMutableRawPointer(destination).copyMemory(from: bytes.baseAddress! + 4 * span.lowerBound,
                                                            byteCount: 4 * span.count)
        }
    }

    /// Floating-point tensor `name` (F32, F16, BF16 or F64), which must have `shape`, converted to F32 into
    /// `destination` (F64 rounded to nearest).
    public func convertFloats(_ name: String, shape: [Int], to destination: UnsafeMutablePointer<Float>) throws {
        let entry = try entry(name)
        guard entry.shape == shape else {
            throw KeelError("\(url.path): tensor '\(name)' has shape \(entry.shape), expected \(shape)")
        }
        let count = shape.reduce(1, *)
        try withBytes(of: name) { bytes in
            switch entry.dtype {
            case .f32:
                UnsafeMutableRawPointer(destination).copyMemory(from: bytes.baseAddress!, byteCount: 4 * count)
            case .f16:
                for i in 0..<count { destination[i] = Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .bf16:
                for i in 0..<count { destination[i] = Float(bitPattern: UInt32(bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
            case .f64:
                for i in 0..<count { destination[i] = Float(bytes.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
            case .i32, .i64, .u8:
                throw KeelError("\(url.path): tensor '\(name)' is \(entry.dtype.rawValue), not floating point")
            }
        }
    }

    /// Tensor `name` converted to Double (F32 or F64), for tests and tools.
    public func doubles(_ name: String) throws -> [Double] {
        let entry = try entry(name)
        return try withBytes(of: name) { bytes in
            switch entry.dtype {
            case .f32: return bytes.withMemoryRebound(to: Float.self) { $0.map(Double.init) }
            case .f64: return Array(bytes.withMemoryRebound(to: Double.self) { $0 })
            case .i32: return bytes.withMemoryRebound(to: Int32.self) { $0.map(Double.init) }
            case .i64: return bytes.withMemoryRebound(to: Int64.self) { $0.map(Double.init) }
            case .u8: return bytes.map(Double.init)
            case .f16: return bytes.withMemoryRebound(to: UInt16.self) { $0.map { Double(Float16(bitPattern: $0)) } }
            case .bf16: return bytes.withMemoryRebound(to: UInt16.self) { $0.map { Double(Float(bitPattern: UInt32($0) << 16)) } }
            }
        }
    }
}
