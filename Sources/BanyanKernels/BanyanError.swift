/// Common shape of every Banyan error: user-ready text naming the file, field or tensor involved.
/// Each target has one error enum conforming to it; the CLI prints `description` and exits non-zero.
public protocol BanyanError: Error, CustomStringConvertible {}
