import Foundation
import Testing
import BanyanTestSupport

/// What one run of the `banyan` binary did.
struct CommandResult: CustomStringConvertible {
    var status: Int32
    /// True when the process died of a signal (a crash, a trap) instead of exiting.
    var crashed: Bool
    var stdout: String
    var stderr: String

    var description: String { "status \(status)\(crashed ? " (signal)" : "")\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }
}

/// Locates and runs the `banyan` executable that `swift test` built beside the test bundle.
enum BanyanBinary {
    /// The built binary: looked for beside the test bundle (`<scratch>/<config>/banyan`), whatever
    /// `--scratch-path` or `-c release` was used, since SwiftPM puts every product of a build in one folder.
    static let url: URL? = {
        var starts: [URL] = []
        // Linux: the test runner is `<scratch>/<config>/<Package>PackageTests.xctest` itself.
        starts.append(URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath())
        starts.append(URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath())
        // macOS: a helper loads `<scratch>/<config>/<Package>PackageTests.xctest/Contents/MacOS/...`.
        starts += Bundle.allBundles.map(\.bundleURL) + [Bundle.main.bundleURL]
        if let i = CommandLine.arguments.firstIndex(of: "--test-bundle-path"), i + 1 < CommandLine.arguments.count {
            starts.append(URL(fileURLWithPath: CommandLine.arguments[i + 1]))
        }
        let fm = FileManager.default
        for start in starts {
            var dir = start
            for _ in 0..<5 {
                dir = dir.deletingLastPathComponent()
                let candidate = dir.appendingPathComponent("banyan")
                var isDir: ObjCBool = false
                if fm.fileExists(atPath: candidate.path, isDirectory: &isDir), !isDir.boolValue,
                   fm.isExecutableFile(atPath: candidate.path) {
                    return candidate
                }
            }
        }
        return nil
    }()

    /// Runs `banyan arguments...` to completion, with `input` on standard input (else none), and
    /// captures both streams.
    static func run(_ arguments: [String], input: Data? = nil) throws -> CommandResult {
        let binary = try #require(url, "the banyan binary was not found beside the test bundle; build it with `swift build` first")
        let scratch = try TemporaryFolder()
        let outURL = scratch.url.appendingPathComponent("stdout"), errURL = scratch.url.appendingPathComponent("stderr")
        try Data().write(to: outURL)
        try Data().write(to: errURL)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.standardOutput = out
        process.standardError = err
        if let input {
            let inURL = scratch.url.appendingPathComponent("stdin")
            try input.write(to: inURL)
            process.standardInput = try FileHandle(forReadingFrom: inURL)
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try process.run()
        process.waitUntilExit()
        try out.close(); try err.close()
        return CommandResult(status: process.terminationStatus, crashed: process.terminationReason == .uncaughtSignal,
                             stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
                             stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
    }

    /// Runs a model command with one worker thread (tests run in parallel on few cores).
    static func run(_ command: String, _ arguments: [String]) throws -> CommandResult {
        try run([command, "--threads", "1"] + arguments)
    }

    /// Runs a command that must succeed and print one JSON object; returns it.
    static func json(_ command: String, _ arguments: [String]) throws -> [String: Any] {
        let r = try run(command, arguments + ["--json"])
        try #require(r.status == 0 && !r.crashed, "\(r)")
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return try #require(object, "stdout is not a JSON object: \(r.stdout)")
    }
}

/// Checks the lines ArgumentParser prints after a `validate()` error of `command`: its usage (the synopsis
/// or `<options>`, depending on length) and where to get help.
func expectUsage(_ lines: ArraySlice<String>, _ command: String, _ r: CommandResult,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    let l = Array(lines)
    #expect(l.count == 3 && l[0].hasPrefix("Usage: banyan \(command) ")
            && l[1] == "  See 'banyan \(command) --help' for more information." && l[2] == "", "\(r)", sourceLocation: sourceLocation)
}
