import Foundation
import BanyanModel

/// `banyan batch merge`: shard outputs → one output in input order, every input line answered
/// exactly once. Needs only the input file (for line order and custom_ids), not the model.
public enum BatchMerge {
    public struct Summary: Sendable {
        public var lines = 0
        public var records = 0
    }

    /// Writes the merged records of `shardOutputs` to `output` in `input`'s line order. Throws, writing
    /// nothing, when a line has no record, when one has two (a shard ran twice with different
    /// outputs, or outputs were given twice), or when a record answers no line of `input`.
    public static func merge(input: URL, shardOutputs: [URL], output: URL) throws -> Summary {
        guard let data = FileManager.default.contents(atPath: input.path) else { throw BatchError.job("cannot read \(input.path)") }
        // Input lines (1-based, blank ones skipped) and the first line of each custom_id.
        var lines: [Int] = []
        var lineOfID: [String: Int] = [:]
        for (number, text) in nonBlankLines(data) {
            lines.append(number)
            if let id = JSONValue.parse(Data(text.utf8))?["custom_id"]?.stringValue, lineOfID[id] == nil { lineOfID[id] = number }
        }
        var recordOfLine: [Int: (text: Data, file: String)] = [:]
        for url in shardOutputs {
            guard let contents = FileManager.default.contents(atPath: url.path) else { throw BatchError.job("cannot read \(url.path)") }
            for (i, raw) in contents.split(separator: UInt8(ascii: "\n")).enumerated() {
                guard let record = JSONValue.parse(Data(raw)), record.objectValue?["response"] != nil || record["error"] != nil else {
                    throw BatchError.job("\(url.path) line \(i + 1) is not a batch output record")
                }
                let line: Int
                if let l = record["error"]?["line"]?.intValue {
                    line = l
                } else if let id = record["custom_id"]?.stringValue, let l = lineOfID[id] {
                    line = l
                } else {
                    throw BatchError.job("\(url.path) line \(i + 1): custom_id \(record["custom_id"]?.brief ?? "null") is not in \(input.path)")
                }
                if let earlier = recordOfLine[line] {
                    throw BatchError.job("input line \(line) is answered twice: in \(earlier.file) and in \(url.path)")
                }
                recordOfLine[line] = (Data(raw), url.path)
            }
        }
        let missing = lines.filter { recordOfLine[$0] == nil }
        if !missing.isEmpty {
            throw BatchError.job("\(missing.count) of \(lines.count) input lines have no record (lines \(missing.prefix(10).map(String.init).joined(separator: ", "))\(missing.count > 10 ? ", ..." : "")): run their shards (again) first")
        }
        var merged = Data()
        for l in lines { merged.append(recordOfLine[l]!.text); merged.append(UInt8(ascii: "\n")) }
        do { try merged.write(to: output, options: .atomic) } catch { throw BatchError.job("writing \(output.path): \(error.localizedDescription)") }
        return Summary(lines: lines.count, records: lines.count)
    }
}
