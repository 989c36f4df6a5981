import ArgumentParser
import Foundation
import BanyanTokenizer
import BanyanEngine

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Text to token ids with a tokenizer.json.")

    @Option(help: "A tokenizer.json file, a model folder containing one, or a .gguf file.") var tokenizer: String
    @Option(help: "The text (default: read standard input, which must be UTF-8).") var text: String?
    @Flag(help: "Apply the post-processor (e.g. add BOS).") var addSpecialTokens = false
    @Flag(help: "Print {\"ids\":[...]}.") var json = false

    func run() throws {
        let tok = try Tokenizer.load(fileOrGGUF: tokenizer)
        let input: String
        if let t = text {
            input = t
        } else {
            input = try Tokenizer.validateUTF8(Array(FileHandle.standardInput.readDataToEndOfFile()))
        }
        let ids = tok.encode(input, addSpecialTokens: addSpecialTokens)
        if json {
            print(JSON.object([("ids", .ints(ids))]).rendered)
        } else {
            print(ids.map(String.init).joined(separator: " "))
        }
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Token ids to text with a tokenizer.json.")

    @Option(help: "A tokenizer.json file, a model folder containing one, or a .gguf file.") var tokenizer: String
    @Option(help: "Token ids, e.g. 1,2,3.") var ids: String
    @Flag(help: "Print {\"text\":\"...\"}.") var json = false

    func run() throws {
        let tok = try Tokenizer.load(fileOrGGUF: tokenizer)
        let text = try tok.decode(try parseTokenList(ids, flag: "--ids"))
        if json { print(JSON.object([("text", .string(text))]).rendered) } else { print(text) }
    }
}
