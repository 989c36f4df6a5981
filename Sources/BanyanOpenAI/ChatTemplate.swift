import Foundation
import BanyanModel

/// One chat message of a `/v1/chat/completions` body.
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String
    public var name: String?
    public init(role: String, content: String, name: String? = nil) { self.role = role; self.content = content; self.name = name }
}

/// A model's chat template (the Jinja subset in `Jinja.swift`), parsed once and rendered per request
/// as transformers' `apply_chat_template` does.
public struct ChatTemplate: Sendable {
    let nodes: [JinjaNode]
    public let bosToken: String
    public let eosToken: String

    /// Parses `source`; throws `OpenAIError.template` naming the line of the first unsupported construct.
    public init(source: String, bosToken: String = "", eosToken: String = "") throws {
        nodes = try parseJinja(source)
        self.bosToken = bosToken
        self.eosToken = eosToken
    }

    /// The template of a model folder: `chat_template.jinja`, else `tokenizer_config.json`'s
    /// `chat_template` (a string, or a list of named templates of which `default` is used).
    /// Nil when the folder has none.
    public static func load(modelFolder: URL) throws -> ChatTemplate? {
        let configURL = modelFolder.appendingPathComponent("tokenizer_config.json")
        var config: JSONValue? = nil
        if let data = FileManager.default.contents(atPath: configURL.path) {
            guard let parsed = JSONValue.parse(data) else { throw OpenAIError.templateConfig("\(configURL.path): not valid JSON") }
            config = parsed
        }
        func special(_ key: String) -> String {
            if let s = config?[key]?.stringValue { return s }
            return config?[key]?["content"]?.stringValue ?? ""
        }
        var source: String? = nil
        let jinjaURL = modelFolder.appendingPathComponent("chat_template.jinja")
        if let data = FileManager.default.contents(atPath: jinjaURL.path) {
            source = String(decoding: data, as: UTF8.self)
        } else if let t = config?["chat_template"] {
            if let s = t.stringValue {
                source = s
            } else if let list = t.arrayValue {
                source = list.first { $0["name"]?.stringValue == "default" }?["template"]?.stringValue
                guard source != nil else { throw OpenAIError.templateConfig("tokenizer_config.json: chat_template has no template named \"default\"") }
            } else {
                throw OpenAIError.templateConfig("tokenizer_config.json: chat_template must be a string or a list of {name, template}")
            }
        }
        guard let source else { return nil }
        do {
            return try ChatTemplate(source: source, bosToken: special("bos_token"), eosToken: special("eos_token"))
        } catch let e as OpenAIError {
            throw OpenAIError.templateConfig("tokenizer_config.json: chat_template: \(e.description)")
        }
    }

    /// The template in a GGUF file's `tokenizer.chat_template`, its BOS and EOS spelled from the
    /// token list (`tokenizer.ggml.bos_token_id` / `eos_token_id`). Nil when the file has none.
    public static func load(gguf: GGUFFile) throws -> ChatTemplate? {
        guard let value = gguf.metadata["tokenizer.chat_template"] else { return nil }
        guard let source = value.stringValue else { throw OpenAIError.templateConfig("\(gguf.path): tokenizer.chat_template must be a string") }
        let tokens = gguf.metadata["tokenizer.ggml.tokens"]?.arrayValue ?? []
        func special(_ key: String) -> String {
            guard let id = gguf.metadata["tokenizer.ggml.\(key)"]?.intValue, tokens.indices.contains(id) else { return "" }
            return tokens[id].stringValue ?? ""
        }
        do {
            return try ChatTemplate(source: source, bosToken: special("bos_token_id"), eosToken: special("eos_token_id"))
        } catch let e as OpenAIError {
            throw OpenAIError.templateConfig("\(gguf.path): tokenizer.chat_template: \(e.description)")
        }
    }

    /// The chat template of a loaded model: its folder's (`load(modelFolder:)`) or its GGUF file's.
    public static func load(model: Model) throws -> ChatTemplate? {
        if let folder = model.folder { return try load(modelFolder: folder) }
        return try model.gguf.flatMap { try load(gguf: $0) }
    }

    /// The prompt text for `messages` (special tokens appear as text; encode it without adding more).
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws -> String {
        let list: [JinjaValue] = messages.map { m in
            var fields: [(String, JinjaValue)] = [("role", .string(m.role)), ("content", .string(m.content))]
            if let name = m.name { fields.append(("name", .string(name))) }
            return .dict(fields)
        }
        let renderer = JinjaRenderer(globals: [
            "messages": .list(list),
            "bos_token": .string(bosToken),
            "eos_token": .string(eosToken),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "raise_exception": .function("raise_exception"),
            "namespace": .function("namespace"),
            "range": .function("range"),
        ])
        try renderer.render(nodes)
        return renderer.output
    }
}
