import CLZMA
import Foundation
import KeelCore

/// The arrays of a NumPy `.npz` file (a zip archive of `.npy` files, stored uncompressed as `np.savez` writes
/// them), optionally inside xz compression (`.npz.xz`, as py3langid ships its model). Only what such files
/// hold is supported: little-endian numbers and fixed-width Unicode strings, C order.
struct NumpyArchive {
    struct Array {
        /// NumPy's type string, for example `<f2`, `<u4`, `<U3`.
        let descr: String
        let shape: [Int]
        /// The elements' bytes.
        let data: Data

        var count: Int { shape.reduce(1, *) }

        /// The elements as `T`, whose size must match the type string's.
        func values<T: FixedWidthInteger>(as type: T.Type) throws -> [T] {
            guard descr.hasPrefix("<") || descr.hasPrefix("|"), Int(descr.dropFirst(2)) == MemoryLayout<T>.size,
                  data.count == count * MemoryLayout<T>.size else {
                throw KeelError("an array of \(descr) \(shape) is not \(T.self)")
            }
            // One copy of the bytes (x86-64 and arm64 are little-endian, as the file is): fast even unoptimised.
            var values = [T](repeating: 0, count: count)
            values.withUnsafeMutableBytes { target in _ = data.copyBytes(to: target) }
            #if _endian(big)
            values = values.map { T(littleEndian: $0) }
            #endif
            return values
        }

        /// Fixed-width Unicode strings (`<Un`: n UTF-32 code units each, zero-padded).
        func strings() throws -> [String] {
            guard descr.hasPrefix("<U"), let width = Int(descr.dropFirst(2)), data.count == count * width * 4 else {
                throw KeelError("an array of \(descr) is not of strings")
            }
            return data.withUnsafeBytes { raw in
                (0..<count).map { index in
                    var scalars = String.UnicodeScalarView()
                    for position in 0..<width {
                        let value = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: (index * width + position) * 4, as: UInt32.self))
                        if value == 0 { break }
                        scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
                    }
                    return String(scalars)
                }
            }
        }
    }

    let arrays: [String: Array]

    /// Reads `path` (`.npz`, or `.npz.xz`).
    init(path: String) throws {
        guard var bytes = FileManager.default.contents(atPath: path) else { throw KeelError("\(path): cannot read") }
        if path.hasSuffix(".xz") { bytes = try Self.decompressXZ(bytes, path: path) }
        arrays = try Self.entries(bytes, path: path)
    }

    subscript(name: String) -> Array? { arrays[name] }

    private static func decompressXZ(_ input: Data, path: String) throws -> Data {
        var stream = lzma_stream()
        guard lzma_stream_decoder(&stream, UInt64.max, 0) == LZMA_OK else { throw KeelError("\(path): cannot start xz decoding") }
        defer { lzma_end(&stream) }
        var output = Data()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        return try input.withUnsafeBytes { (source: UnsafeRawBufferPointer) -> Data in
            stream.next_in = source.bindMemory(to: UInt8.self).baseAddress
            stream.avail_in = source.count
            while true {
                let result = chunk.withUnsafeMutableBufferPointer { buffer -> lzma_ret in
                    stream.next_out = buffer.baseAddress
                    stream.avail_out = buffer.count
                    let result = lzma_code(&stream, LZMA_FINISH)
                    output.append(buffer.baseAddress!, count: buffer.count - stream.avail_out)
                    return result
                }
                if result == LZMA_STREAM_END { return output }
                guard result == LZMA_OK else { throw KeelError("\(path): not a valid xz file (liblzma error \(result.rawValue))") }
            }
        }
    }

    /// The stored entries of a zip archive, walked by their local headers (zip64 sizes included).
    private static func entries(_ bytes: Data, path: String) throws -> [String: Array] {
        var arrays: [String: Array] = [:]
        try bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            func u16(_ at: Int) -> Int { Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt16.self))) }
            func u32(_ at: Int) -> Int { Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self))) }
            func u64(_ at: Int) -> Int { Int(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self))) }
            var offset = 0
            while offset + 30 <= raw.count, u32(offset) == 0x0403_4B50 {
                let method = u16(offset + 8), nameLength = u16(offset + 26), extraLength = u16(offset + 28)
                var size = u32(offset + 22)
                let nameStart = offset + 30, extraStart = nameStart + nameLength, dataStart = extraStart + extraLength
                guard dataStart <= raw.count else { break }
                let name = String(decoding: raw[nameStart..<extraStart], as: UTF8.self)
                if size == 0xFFFF_FFFF {
                    // The zip64 extra field (id 1) holds the real sizes, uncompressed first.
                    var field = extraStart
                    while field + 4 <= dataStart, u16(field) != 1 { field += 4 + u16(field + 2) }
                    guard field + 12 <= dataStart else { throw KeelError("\(path): \(name) has no zip64 size") }
                    size = u64(field + 4)
                }
                guard method == 0 else { throw KeelError("\(path): \(name) is compressed inside the zip; only stored arrays are read") }
                guard dataStart + size <= raw.count else { throw KeelError("\(path): \(name) is cut short") }
                arrays[(name as NSString).deletingPathExtension] = try npy(Data(raw[dataStart..<(dataStart + size)]), name: "\(path): \(name)")
                offset = dataStart + size
            }
        }
        guard !arrays.isEmpty else { throw KeelError("\(path): not a NumPy .npz archive") }
        return arrays
    }

    /// One `.npy`: magic, version, header length, a Python-dict header, then the data.
    private static func npy(_ bytes: Data, name: String) throws -> Array {
        guard bytes.count >= 10, bytes.starts(with: [0x93] + Swift.Array("NUMPY".utf8)) else { throw KeelError("\(name): not a .npy array") }
        let major = bytes[bytes.startIndex + 6]
        let headerLength = major == 1 ? Int(bytes[bytes.startIndex + 8]) | Int(bytes[bytes.startIndex + 9]) << 8
            : Int(bytes[bytes.startIndex + 8]) | Int(bytes[bytes.startIndex + 9]) << 8 | Int(bytes[bytes.startIndex + 10]) << 16 | Int(bytes[bytes.startIndex + 11]) << 24
        let headerStart = bytes.startIndex + (major == 1 ? 10 : 12)
        guard headerStart + headerLength <= bytes.endIndex else { throw KeelError("\(name): header cut short") }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        func field(_ key: String) -> Substring? {
            guard let keyRange = header.range(of: "'\(key)': ") else { return nil }
            return header[keyRange.upperBound...]
        }
        guard let descrField = field("descr"), descrField.first == "'", let descrEnd = descrField.dropFirst().firstIndex(of: "'"),
              let shapeField = field("shape"), let shapeEnd = shapeField.firstIndex(of: ")"),
              field("fortran_order")?.hasPrefix("False") == true else {
            throw KeelError("\(name): header not understood: \(header)")
        }
        let descr = String(descrField[descrField.index(after: descrField.startIndex)..<descrEnd])
        let shape = shapeField.dropFirst()[..<shapeEnd].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        return Array(descr: descr, shape: shape, data: Data(bytes[(headerStart + headerLength)...]))
    }
}
