import BanyanModel

/// The CLI's name for ordered JSON output.
typealias JSON = JSONOutput
