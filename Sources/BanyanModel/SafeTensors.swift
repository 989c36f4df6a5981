import Foundation
import BanyanKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file; unmapped when released.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer
    public let size: Int

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ModelError.io(path: path, message: "cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ModelError.io(path: path, message: "cannot stat") }
        size = Int(st.st_size)
        guard size > 0 else { throw ModelError.safetensors(file: path, message: "file is empty") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw ModelError.io(path: path, message: "cannot mmap")
        }
        base = UnsafeRawPointer(p)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }
}

/// One tensor's entry in a safetensors header: dtype, shape and where its bytes lie in the mapping.
public struct TensorEntry: Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let file: MappedFile
    public let offset: Int  // absolute byte offset in `file`
    public let byteCount: Int
    public var elementCount: Int { shape.reduce(1, *) }
    public var pointer: UnsafeRawPointer { file.base + offset }
}

/// A parsed `.safetensors` file (https://github.com/huggingface/safetensors format): an 8-byte
/// little-endian header length, a JSON header, then the raw tensor bytes. Everything is validated
/// against the file size before any tensor is touched.
public struct SafeTensorsFile: Sendable {
    public let file: MappedFile
    public let tensors: [String: TensorEntry]
    /// Tensor names whose dtype we cannot compute with (e.g. I64 buffers); an error only if one is needed.
    public let unsupported: [String: (dtype: String, file: String)]

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        self.file = file
        func fail(_ m: String) -> ModelError { .safetensors(file: path, message: m) }
        guard file.size >= 8 else { throw fail("truncated: \(file.size) bytes, shorter than the 8-byte header length") }
        let headerLength = Int(file.base.loadUnaligned(as: UInt64.self).littleEndian & 0x7FFF_FFFF_FFFF_FFFF)
        guard headerLength > 0 else { throw fail("header length is 0 (corrupt file)") }
        guard headerLength <= file.size - 8 else {
            throw fail("header length \(headerLength) exceeds the file size \(file.size) (truncated or not a safetensors file)")
        }
        let headerData = Data(bytes: file.base + 8, count: headerLength)
        guard let header = JSONValue.parse(headerData)?.objectValue else {
            throw fail("header is not a valid JSON object (corrupt file?)")
        }
        let dataStart = 8 + headerLength
        let dataSize = file.size - dataStart
        var tensors: [String: TensorEntry] = [:]
        var unsupported: [String: (dtype: String, file: String)] = [:]
        // Sorted so the first problem reported is the same on every run.
        for (key, value) in header.sorted(by: { $0.key < $1.key }) where key != "__metadata__" {
            guard let dtypeName = value["dtype"]?.stringValue,
                  let shapeValues = value["shape"]?.arrayValue,
                  let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
                  let begin = offsets[0].intValue, let end = offsets[1].intValue else {
                throw fail("tensor \"\(key)\": malformed header entry")
            }
            let shape = shapeValues.compactMap(\.intValue)
            guard shape.count == shapeValues.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("tensor \"\(key)\": malformed shape")
            }
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw fail("tensor \"\(key)\": data offsets [\(begin), \(end)) outside the \(dataSize) data bytes (truncated file?)")
            }
            let dtype: DType
            switch dtypeName {
            case "F32": dtype = .f32
            case "F16": dtype = .f16
            case "BF16": dtype = .bf16
            default:
                unsupported[key] = (dtypeName, path)
                continue
            }
            let count = shape.reduce(1, *)
            guard count * dtype.byteCount == end - begin else {
                throw fail("tensor \"\(key)\": \(end - begin) bytes for shape \(shape) of \(dtypeName) (expected \(count * dtype.byteCount))")
            }
            tensors[key] = TensorEntry(name: key, dtype: dtype, shape: shape, file: file,
                                       offset: dataStart + begin, byteCount: end - begin)
        }
        self.tensors = tensors
        self.unsupported = unsupported
    }
}

/// All tensors of a checkpoint folder: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`.
public struct Checkpoint: Sendable {
    public let folder: URL
    public let tensors: [String: TensorEntry]
    let unsupported: [String: (dtype: String, file: String)]
    let files: [SafeTensorsFile]

    public init(folder: URL) throws {
        self.folder = folder
        let fm = FileManager.default
        let single = folder.appendingPathComponent("model.safetensors")
        let index = folder.appendingPathComponent("model.safetensors.index.json")
        var files: [SafeTensorsFile] = []
        var expected: [String: String] = [:]
        if fm.fileExists(atPath: single.path) {
            files = [try SafeTensorsFile(path: single.path)]
        } else if fm.fileExists(atPath: index.path) {
            guard let data = fm.contents(atPath: index.path), let json = JSONValue.parse(data),
                  let map = json["weight_map"]?.objectValue else {
                throw ModelError.config(file: index.path, field: "weight_map", message: "missing or not an object")
            }
            var shardNames: [String] = []
            for (tensor, shard) in map {
                guard let s = shard.stringValue else {
                    throw ModelError.config(file: index.path, field: "weight_map.\(tensor)", message: "expected a file name")
                }
                expected[tensor] = s
                if !shardNames.contains(s) { shardNames.append(s) }
            }
            for s in shardNames.sorted() {
                guard !s.contains("/") else {
                    throw ModelError.config(file: index.path, field: "weight_map", message: "shard \"\(s)\" is not a file name")
                }
                files.append(try SafeTensorsFile(path: folder.appendingPathComponent(s).path))
            }
        } else {
            throw ModelError.io(path: folder.path, message: "no model.safetensors or model.safetensors.index.json")
        }
        var all: [String: TensorEntry] = [:]
        var unsupported: [String: (dtype: String, file: String)] = [:]
        for f in files {
            all.merge(f.tensors) { a, _ in a }
            unsupported.merge(f.unsupported) { a, _ in a }
        }
        for (tensor, shard) in expected.sorted(by: { $0.key < $1.key }) where all[tensor] == nil && unsupported[tensor] == nil {
            throw ModelError.missingTensor(name: tensor, files: folder.appendingPathComponent(shard).path)
        }
        self.files = files
        self.tensors = all
        self.unsupported = unsupported
    }

    /// The tensor `name` with exactly `shape`, or a clear error.
    public func tensor(_ name: String, shape: [Int]) throws -> TensorEntry {
        guard let t = tensors[name] else {
            if let u = unsupported[name] {
                throw ModelError.tensorMismatch(name: name, file: u.file, expected: "F32, F16 or BF16", found: u.dtype)
            }
            throw ModelError.missingTensor(name: name, files: folder.path)
        }
        guard t.shape == shape else {
            throw ModelError.tensorMismatch(name: name, file: t.file.path, expected: "shape \(shape) (from config.json)",
                                            found: "shape \(t.shape)")
        }
        return t
    }
}
