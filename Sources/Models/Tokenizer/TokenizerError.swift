/// Why a tokenizer could not be loaded, written or used; `description` is one line.
public struct TokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        /// The file could not be read or written.
        case io
        /// `tokenizer.json` is not valid JSON or lacks a required part.
        case invalidFile
        /// A component (model type, normalizer, pre-tokenizer, decoder, option) that is not supported.
        case unsupported
        /// A merge names a token the vocabulary does not have.
        case invalidMerges
        /// An id outside the vocabulary was given to `decode`.
        case idOutOfRange
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
