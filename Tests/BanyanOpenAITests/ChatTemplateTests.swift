import Foundation
import Testing
import BanyanOpenAI
import BanyanTestSupport

/// One template of `Tests/Fixtures/chat_templates.json` (made by scripts/make_chat_template_fixtures.py
/// with transformers' `apply_chat_template`).
struct TemplateFixture: Decodable, CustomStringConvertible {
    struct Message: Decodable { var role: String; var content: String; var name: String? }
    struct Case: Decodable {
        var messages: [Message]
        var add_generation_prompt: Bool
        var expected: String?
        var error: String?
    }
    var name: String
    var template: String
    var bos_token: String
    var eos_token: String
    var cases: [Case]
    var description: String { name }

    static let all: [TemplateFixture] = {
        let url = FixturePaths.fixtures.appendingPathComponent("chat_templates.json")
        guard let data = try? Data(contentsOf: url) else { return [] }
        return (try? JSONDecoder().decode([TemplateFixture].self, from: data)) ?? []
    }()
}

@Suite("Chat templates")
struct ChatTemplateTests {
    @Test("the fixture file holds the public templates")
    func fixturesPresent() {
        #expect(Set(TemplateFixture.all.map(\.name)).isSuperset(of: ["llama2", "llama3", "qwen2", "qwen2.5", "mistral", "mistral-v0.3"]))
    }

    @Test("renders exactly as transformers' apply_chat_template", arguments: TemplateFixture.all)
    func matchesTransformers(_ fixture: TemplateFixture) throws {
        let template = try ChatTemplate(source: fixture.template, bosToken: fixture.bos_token, eosToken: fixture.eos_token)
        for (i, c) in fixture.cases.enumerated() {
            let messages = c.messages.map { ChatMessage(role: $0.role, content: $0.content, name: $0.name) }
            if let expected = c.expected {
                let got = try template.render(messages, addGenerationPrompt: c.add_generation_prompt)
                #expect(got == expected, "case \(i)")
            } else {
                #expect(throws: OpenAIError.self, "case \(i)") { try template.render(messages, addGenerationPrompt: c.add_generation_prompt) }
                do {
                    _ = try template.render(messages, addGenerationPrompt: c.add_generation_prompt)
                } catch let e as OpenAIError {
                    #expect(e.description == "chat template raised: \(c.error ?? "")", "case \(i)")
                }
            }
        }
    }

    @Test("unsupported Jinja is refused with its line", arguments: [
        ("{% macro m() %}x{% endmacro %}", "line 1: unsupported tag 'macro'"),
        ("a\n{{ x | wordwrap }}", "line 2: unsupported filter 'wordwrap'"),
        ("\n\n{{ strftime_now('%Y') }}", "line 3: unsupported function 'strftime_now'"),
        ("{% if true %}x", "line 1: 'if' is never closed (endif)"),
        ("{{ 'a' + 1 }}", "line 1: cannot add string and int (use ~ to join text)"),
        ("{% for m in messages %}\n{% endif %}", "line 2: unexpected 'endif' (no open block it belongs to)"),
        ("{% for m in messages %}x", "line 1: 'for' is never closed (endfor)"),
        ("{{ x is divisibleby 3 }}", "line 1: unsupported test 'divisibleby'"),
        ("{{ 'abc }}", "line 1: unterminated string"),
    ])
    func unsupported(_ source: String, _ message: String) throws {
        do {
            let t = try ChatTemplate(source: source)
            _ = try t.render([ChatMessage(role: "user", content: "hi")])
            Issue.record("no error for \(source)")
        } catch let e as OpenAIError {
            #expect(e.description.hasPrefix("chat template: " + message), "\(e)")
        }
    }

    @Test("whitespace control: -, trim_blocks, lstrip_blocks, + ")
    func whitespace() throws {
        let t = try ChatTemplate(source: "a  {%- if true -%}  b  {%- endif %}\n  {% if true %}\nc\n  {%+ if true %}d{% endif %}{% endif %}\n{{- ' e' -}}  \n f")
        // Expected output from jinja2 with trim_blocks and lstrip_blocks (transformers' settings).
        #expect(try t.render([]) == "abc\n  d ef")
    }

    @Test("scoping: set in a loop stays in the loop, namespace carries out")
    func scoping() throws {
        let t = try ChatTemplate(source: "{% set x = 1 %}{% set ns = namespace(y=1) %}{% for i in range(3) %}{% set x = i %}{% set ns.y = ns.y * 2 %}{% endfor %}{{ x }} {{ ns.y }}")
        #expect(try t.render([]) == "1 8")
    }

    @Test("a model folder's template: tokenizer_config.json chat_template, special tokens as objects")
    func loadFromFolder() throws {
        let folder = try TemporaryFolder()
        let config: [String: Any] = ["bos_token": ["content": "<s>"], "eos_token": "</s>",
                                     "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}"]
        try JSONSerialization.data(withJSONObject: config).write(to: folder.url.appendingPathComponent("tokenizer_config.json"))
        let t = try #require(try ChatTemplate.load(modelFolder: folder.url))
        #expect(try t.render([ChatMessage(role: "user", content: "x")]) == "<s>[user]x</s>")
        let empty = try TemporaryFolder()
        #expect(try ChatTemplate.load(modelFolder: empty.url) == nil)
    }
}
