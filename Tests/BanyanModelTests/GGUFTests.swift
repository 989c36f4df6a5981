import Foundation
import Testing
import BanyanKernels
import BanyanModel
import BanyanTestSupport

/// The GGUF reader, the reference dequantizers and models built from GGUF files.
@Suite struct GGUFTests {
    static let dequantFile = FixturePaths.gguf.appendingPathComponent("dequant.gguf")

    /// Every type's dequantization equals gguf-py's `gguf.quants.dequantize` bit for bit: both
    /// evaluate `(d · scale) · q ± min` in float32 in the same order, without fused multiply-adds.
    @Test(arguments: GGMLType.allCases.map(\.name))
    func dequantizationMatchesGGUFPy(_ typeName: String) throws {
        let file = try GGUFFile(path: Self.dequantFile.path)
        let stored = try #require(file.tensors[typeName])
        let reference = try #require(file.tensors[typeName + ".ref"])
        #expect(stored.type.name == typeName)
        #expect(reference.type == .f32 && reference.shape == stored.shape)
        let rows = stored.shape[1], cols = stored.shape[0]
        let rowBytes = try #require(stored.type.rowByteCount(cols))
        var got = [Float](repeating: .nan, count: rows * cols)
        got.withUnsafeMutableBufferPointer { out in
            for r in 0..<rows { Dequantize.row(stored.type, stored.pointer + r * rowBytes, count: cols, into: out.baseAddress! + r * cols) }
        }
        let want = (0..<rows * cols).map { reference.pointer.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        let mismatches = zip(got, want).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(mismatches == 0, "\(typeName): \(mismatches) of \(got.count) values differ from gguf-py")
        #expect(want.contains { $0 != 0 })
    }

    /// The fixture models resolve to the config their metadata describes.
    @Test func fixtureConfigs() throws {
        func config(_ name: String) throws -> ModelConfig {
            try ModelConfig(gguf: GGUFFile(path: FixturePaths.gguf.appendingPathComponent("\(name).gguf").path))
        }
        #expect(try config("llama-q4_1") == ModelConfig(
            architecture: .llama, hiddenSize: 64, layerCount: 2, headCount: 4, kvHeadCount: 2, headDim: 16, intermediateSize: 128,
            vocabularySize: 512, maxPositionCount: 256, rmsNormEpsilon: 1e-5, ropeTheta: 10000, tieWordEmbeddings: true,
            bosTokenID: 1, eosTokenIDs: [2]))
        #expect(try config("llama-q5_1").tieWordEmbeddings == false)
        #expect(try config("qwen2-q8_0") == ModelConfig(
            architecture: .qwen2, hiddenSize: 64, layerCount: 2, headCount: 4, kvHeadCount: 2, headDim: 16, intermediateSize: 128,
            vocabularySize: 512, maxPositionCount: 256, rmsNormEpsilon: 1e-5, ropeTheta: 1_000_000, tieWordEmbeddings: true,
            attentionBias: true, bosTokenID: 1, eosTokenIDs: [2]))
        #expect(try config("llama-kquants").hiddenSize == 256)
    }

    /// Quantized matrices are widened to float32 and keep their blocks (the seam for integer kernels);
    /// the widened rows are the blocks' dequantization, row for row (Q and K rows unpermuted alike).
    @Test(arguments: ["llama-q4_1", "llama-kquants", "qwen2-q8_0"])
    func quantizedRowsKept(_ name: String) throws {
        let model = try Model.load(FixturePaths.gguf.appendingPathComponent("\(name).gguf").path, threads: ThreadPool(threadCount: 1))
        let layer = model.weights.layers[0]
        for m in [layer.wq, layer.wk, layer.wv, layer.wo, layer.wGate, layer.wUp, layer.wDown, model.weights.embedding] {
            #expect(m.dtype == .f32)
            let q = try #require(m.quantized)
            var row = [Float](repeating: 0, count: m.cols)
            for r in [0, m.rows / 2 + 1, m.rows - 1] {
                row.withUnsafeMutableBufferPointer { Dequantize.row(q.type, q.base + r * q.rowByteCount, count: m.cols, into: $0.baseAddress!) }
                #expect(row == (0..<m.cols).map { m.element(r, $0) })
            }
        }
        #expect(model.weights.dtype == .f32)
        #expect(model.folder == nil && model.gguf != nil)
        if name == "llama-kquants" {
            #expect([layer.wq, layer.wk, layer.wv, layer.wDown].map { $0.quantized?.type } == [.q4_K, .q5_K, .q6_K, .q6_K])
        }
    }

    /// F16 tensors stay memory-mapped in their dtype; an F32 file's matrices are float32 views.
    @Test func floatTensorsStayInTheirDType() throws {
        let pool = ThreadPool(threadCount: 1)
        let f16 = try Model.load(FixturePaths.gguf.appendingPathComponent("llama-f16.gguf").path, threads: pool)
        #expect(f16.weights.dtype == .f16 && f16.weights.layers[0].wv.quantized == nil)
        let f32 = try Model.load(FixturePaths.gguf.appendingPathComponent("llama-f32.gguf").path, threads: pool)
        #expect(f32.weights.dtype == .f32 && f32.weights.lmHead.base == f32.weights.embedding.base)
    }

    /// Undoing llama.cpp's Q/K permutation: the F32 llama fixture's wq rows are the stored rows, with
    /// each head's rows `2i + s` moved back to `s · half + i`.
    @Test func qkRowsUnpermuted() throws {
        let path = FixturePaths.gguf.appendingPathComponent("llama-f32.gguf").path
        let file = try GGUFFile(path: path)
        let model = try Model.load(path, threads: ThreadPool(threadCount: 1))
        let c = model.config, stored = try #require(file.tensors["blk.1.attn_k.weight"])
        let half = c.headDim / 2
        for h in 0..<c.kvHeadCount {
            for s in 0..<2 {
                for i in 0..<half {
                    let storedRow = h * c.headDim + 2 * i + s, hfRow = h * c.headDim + s * half + i
                    let want = (0..<c.hiddenSize).map { stored.pointer.loadUnaligned(fromByteOffset: 4 * (storedRow * c.hiddenSize + $0), as: Float.self) }
                    #expect((0..<c.hiddenSize).map { model.weights.layers[1].wk.element(hfRow, $0) } == want)
                }
            }
        }
    }

    // MARK: - metadata values

    /// Metadata integers of every width, floats, bools, strings and (nested) arrays are read back.
    @Test func metadataValues() throws {
        var image = GGUFImage()
        image.metadata = [
            ("u8", .u8(200)), ("i8", .i8(-5)), ("u16", .u16(60000)), ("i16", .i16(-30000)), ("u32", .u32(4_000_000_000)),
            ("i32", .i32(-2_000_000_000)), ("u64", .u64(UInt64.max)), ("i64", .i64(Int64.min)), ("f32", .f32(0.5)),
            ("f64", .f64(-2.25)), ("bool", .bool(true)), ("string", .string("héllo")),
            ("nested", .array(elementType: 9, [.array(elementType: 4, [.u32(1), .u32(2)]), .array(elementType: 8, [.string("x")])])),
        ]
        let folder = try TemporaryFolder()
        let url = folder.url.appendingPathComponent("m.gguf")
        try image.write(to: url)
        let m = try GGUFFile(path: url.path).metadata
        #expect(m["u8"] == .uint(200) && m["i8"] == .int(-5) && m["u16"] == .uint(60000) && m["i16"] == .int(-30000))
        #expect(m["u32"] == .uint(4_000_000_000) && m["i32"] == .int(-2_000_000_000))
        #expect(m["u64"] == .uint(UInt64.max) && m["u64"]?.intValue == nil && m["i64"] == .int(Int64.min))
        #expect(m["f32"] == .float(0.5) && m["f64"] == .float(-2.25) && m["bool"] == .bool(true) && m["string"] == .string("héllo"))
        #expect(m["nested"] == .array([.array([.uint(1), .uint(2)]), .array([.string("x")])]))
        #expect(m["i8"]?.intValue == -5 && m["u16"]?.doubleValue == 60000)
    }

    // MARK: - malformed files

    struct Broken: Sendable, CustomStringConvertible {
        let description: String
        let edit: @Sendable (inout GGUFImage) -> Void
        /// The error message after "<path>: ".
        let message: String
    }

    static let broken: [Broken] = [
        Broken(description: "bad magic", edit: { $0.magic = Array("GGML".utf8) },
               message: "not a GGUF file: magic is 47 47 4d 4c (expected \"GGUF\", 47 47 55 46)"),
        Broken(description: "version 1", edit: { $0.version = 1 }, message: "GGUF version 1 unsupported (2, 3)"),
        Broken(description: "big-endian", edit: { $0.version = UInt32(3).byteSwapped },
               message: "big-endian GGUF (version 3) unsupported: only little-endian files can be read"),
        Broken(description: "lying tensor count", edit: { $0.tensorCountOverride = 1 << 40 },
               message: "tensor count is 1099511627776, more than the 3824 bytes left in the file can hold (truncated or corrupt)"),
        Broken(description: "lying string length", edit: { $0.metadata[0].value = .raw(type: 8, (0..<8).map { UInt8(truncatingIfNeeded: (UInt64(1) << 60) >> (8 * $0)) }) },
               message: "metadata \"general.architecture\": string length is 1152921504606846976, more than the 3744 bytes left in the file can hold (truncated or corrupt)"),
        Broken(description: "lying array length", edit: { $0.metadata[11].value = .array(elementType: 8, [.string("a")], lengthOverride: 1 << 33) },
               message: "metadata \"tokenizer.ggml.tokens\": array length is 8589934592, more than the 3245 bytes left in the file can hold (truncated or corrupt)"),
        Broken(description: "unknown value type", edit: { $0.metadata[2].value = .raw(type: 13, []) },
               message: "metadata \"llama.embedding_length\": unknown value type 13 (expected 0 to 12)"),
        Broken(description: "bad bool", edit: { $0.metadata[2].value = .raw(type: 7, [2]) },
               message: "metadata \"llama.embedding_length\": bool is 2 (expected 0 or 1)"),
        Broken(description: "duplicate key", edit: { $0.metadata.append($0.metadata[0]) },
               message: "metadata \"general.architecture\" appears twice"),
        Broken(description: "alignment not a power of two", edit: { $0.metadata.append(("general.alignment", .u32(24))) },
               message: "general.alignment: expected a power of two, found the integer 24"),
        Broken(description: "alignment zero", edit: { $0.metadata.append(("general.alignment", .u32(0))) },
               message: "general.alignment: expected a power of two, found the integer 0"),
        Broken(description: "offset not aligned", edit: { $0.tensors[1].offsetOverride = 100 },
               message: "tensor \"blk.0.attn_norm.weight\": data offset 100 is not a multiple of the alignment 32"),
        Broken(description: "offset past the end", edit: { $0.tensors[3].offsetOverride = 1 << 20 },
               message: "tensor \"blk.0.attn_k.weight\": data [1048576, 1048704) of F32 [8, 4] lies past the end of the 2592 data bytes (truncated file?)"),
        Broken(description: "huge offset", edit: { $0.tensors[3].offsetOverride = UInt64.max - 31 },
               message: "tensor \"blk.0.attn_k.weight\": data offset 18446744073709551584 is not a multiple of the alignment 32"),
        Broken(description: "unknown tensor type", edit: { $0.tensors[2].type = 10 },
               message: "tensor \"blk.0.attn_q.weight\": tensor type Q2_K unsupported (supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, BF16)"),
        Broken(description: "unassigned tensor type", edit: { $0.tensors[2].type = 77 },
               message: "tensor \"blk.0.attn_q.weight\": tensor type type 77 unsupported (supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, BF16)"),
        Broken(description: "row not whole blocks", edit: { $0.tensors[2].type = 8 },
               message: "tensor \"blk.0.attn_q.weight\": row length 8 is not a multiple of the Q8_0 block size 32"),
        Broken(description: "five dimensions", edit: { $0.tensors[0].dims = [1, 1, 1, 1, 48] },
               message: "tensor \"token_embd.weight\": 5 dimensions (expected 1 to 4)"),
        Broken(description: "huge dimension", edit: { $0.tensors[0].dims = [8, 1 << 40] },
               message: "tensor \"token_embd.weight\": dimension 1 is 1099511627776, implausibly large"),
        Broken(description: "duplicate tensor", edit: { $0.tensors[1].name = "token_embd.weight" },
               message: "tensor \"token_embd.weight\" appears twice"),
        // Through Model.load: metadata the config needs.
        Broken(description: "unknown architecture", edit: { $0.metadata[0].value = .string("gemma") },
               message: "general.architecture: \"gemma\" unsupported (llama, qwen2, qwen3)"),
        Broken(description: "missing key", edit: { $0.metadata.remove(at: 3) }, message: "llama.block_count: missing"),
        Broken(description: "key of the wrong type", edit: { $0.metadata[4].value = .string("16") },
               message: "llama.feed_forward_length: expected an integer, found \"16\""),
        Broken(description: "per-layer head counts", edit: { $0.metadata[5].value = .array(elementType: 4, [.u32(2)]) },
               message: "llama.attention.head_count: expected an integer, found a list"),
        Broken(description: "empty vocabulary", edit: { $0.tensors[0].dims = [8, 0]; $0.tensors[0].data = [] },
               message: "tensor \"token_embd.weight\": expected at least one row (token), found shape [8, 0]"),
        Broken(description: "negative count", edit: { $0.metadata[5].value = .i32(-2) },
               message: "llama.attention.head_count: must be positive, found -2"),
        Broken(description: "yarn rope scaling", edit: { $0.metadata.append(("llama.rope.scaling.type", .string("yarn"))) },
               message: "llama.rope.scaling.type: \"yarn\" unsupported (none, linear)"),
        Broken(description: "missing tensor", edit: { $0.tensors.remove(at: 7) }, message: "tensor \"blk.0.ffn_gate.weight\" missing"),
        Broken(description: "wrong shape", edit: { $0.tensors[4].dims = [4, 8]; $0.tensors[4].data = Array($0.tensors[4].data.prefix(128)) },
               message: "tensor \"blk.0.attn_v.weight\": expected shape [8, 4] (ggml order, from the metadata), found shape [4, 8]"),
        Broken(description: "extra tensor", edit: { $0.tensors.append(.init(name: "blk.0.ffn_gate_exps.weight", dims: [2], floats: [1, 1])) },
               message: "tensor \"blk.0.ffn_gate_exps.weight\": expected no such tensor for LlamaForCausalLM, found 1 unexpected tensor(s)"),
        Broken(description: "rope_freqs of the wrong shape", edit: { $0.tensors.append(.init(name: "rope_freqs.weight", dims: [4], floats: [1, 1, 1, 1])) },
               message: "tensor \"rope_freqs.weight\": expected shape [2] (half the head dimension), found shape [4]"),
        Broken(description: "rope_freqs not positive", edit: { $0.tensors.append(.init(name: "rope_freqs.weight", dims: [2], floats: [1, 0])) },
               message: "tensor \"rope_freqs.weight\": expected positive factors, found [1.0, 0.0]"),
        Broken(description: "two RoPE scalings", edit: {
                   $0.tensors.append(.init(name: "rope_freqs.weight", dims: [2], floats: [1, 2]))
                   $0.metadata += [("llama.rope.scaling.type", .string("linear")), ("llama.rope.scaling.factor", .f32(2))]
               }, message: "llama.rope.scaling.type: set together with rope_freqs.weight (one scaling only)"),
    ]

    @Test(arguments: broken)
    func malformedFileIsAClearError(_ broken: Broken) throws {
        var image = GGUFImage.tinyLlama()
        broken.edit(&image)
        let folder = try TemporaryFolder()
        let url = folder.url.appendingPathComponent("broken.gguf")
        try image.write(to: url)
        let error = #expect(throws: ModelError.self) { try Model.load(url.path, threads: ThreadPool(threadCount: 1)) }
        #expect(error?.description == "\(url.path): \(broken.message)")
    }

    /// The unbroken tiny model loads, and every cut of it is an error, not a crash or an
    /// out-of-bounds read: each prefix through the header and tensor infos (the first 1,248 bytes),
    /// then every 7th in the data (cuts there all fail the same check).
    @Test func everyTruncationIsAnError() throws {
        let bytes = GGUFImage.tinyLlama().bytes
        let folder = try TemporaryFolder()
        let url = folder.url.appendingPathComponent("cut.gguf")
        try Data(bytes).write(to: url)
        let pool = ThreadPool(threadCount: 1)
        let model = try Model.load(url.path, threads: pool)
        #expect(model.config.tieWordEmbeddings && model.config.vocabularySize == 6 && model.config.eosTokenIDs == [2])
        var messages = Set<String>()
        for length in Array(0..<1300) + Array(stride(from: 1300, to: bytes.count, by: 7)) {
            try Data(bytes.prefix(length)).write(to: url)
            do {
                _ = try Model.load(url.path, threads: pool)
                Issue.record("a file cut to \(length) of \(bytes.count) bytes loaded")
            } catch let error as ModelError {
                messages.insert(error.description.replacingOccurrences(of: #"\d+"#, with: "N", options: .regularExpression))
            }
        }
        // Cuts in the header and metadata are "truncated: ..." (or a count the rest cannot hold),
        // cuts in the data "lies past the end"; an empty file is refused by the mapping.
        #expect(messages.contains { $0.contains("metadata \"tokenizer.ggml.tokens\"[N]: string length is N, more than") })
        #expect(messages.contains { $0.contains("truncated: tensor \"output_norm.weight\": data offset needs N bytes") })
        #expect(messages.contains { $0.contains("lies past the end") })
        #expect(messages.allSatisfy { $0.hasPrefix(url.path.replacingOccurrences(of: #"\d+"#, with: "N", options: .regularExpression) + ": ") })
        print("GGUF truncations: \(messages.count) distinct messages")
    }
}
