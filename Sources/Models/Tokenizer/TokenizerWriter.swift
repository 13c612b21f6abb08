extension Tokenizer {
    /// Writes a byte-level BPE `tokenizer.json` (GPT-2 style, as Hugging Face tokenizers writes it)
    /// that both this type and Hugging Face load. `vocab` holds byte-level tokens (`Ġ` for space);
    /// `merges` must combine tokens of `vocab` into tokens of `vocab`; added tokens are matched before
    /// BPE, and `special` ones are dropped by `decode(skipSpecialTokens: true)`.
    ///
    /// The file is checked by loading it before it replaces `path`.
    public static func writeByteLevelTokenizer(
        vocab: [String: Int32], merges: [(String, String)], addedTokens: [(Int32, String, special: Bool)],
        to path: String
    ) throws(TokenizerError) {
        let bytes = byteLevelTokenizerJSON(vocab: vocab, merges: merges, addedTokens: addedTokens)
        do {
            _ = try Tokenizer(json: bytes)
        } catch {
            throw TokenizerError(error.kind, "refusing to write \(path): \(error.message)")
        }
        do {
            try FileIO.writeAtomically(path, bytes: bytes)
        } catch {
            throw TokenizerError(.io, "\(error)")
        }
    }

    /// The JSON of `writeByteLevelTokenizer`.
    static func byteLevelTokenizerJSON(
        vocab: [String: Int32], merges: [(String, String)], addedTokens: [(Int32, String, special: Bool)]
    ) -> [UInt8] {
        func byteLevel(addPrefixSpace: Bool, trimOffsets: Bool) -> JSONValue {
            .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(addPrefixSpace)),
                     ("trim_offsets", .bool(trimOffsets)), ("use_regex", .bool(true))])
        }
        let added: [JSONValue] = addedTokens.sorted { $0.0 < $1.0 }.map { token in
            .object([("id", .int(Int(token.0))), ("content", .string(token.1)), ("single_word", .bool(false)),
                     ("lstrip", .bool(false)), ("rstrip", .bool(false)), ("normalized", .bool(false)),
                     ("special", .bool(token.special))])
        }
        // Merges as "a b" strings, which every tokenizers version reads, unless a token has a space.
        let hasSpace = merges.contains { $0.0.contains(" ") || $0.1.contains(" ") }
        let mergeValues: [JSONValue] = merges.map {
            hasSpace ? .array([.string($0.0), .string($0.1)]) : .string("\($0.0) \($0.1)")
        }
        let vocabValue = JSONValue.object(vocab.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map { ($0.key, .int(Int($0.value))) })
        let json = JSONValue.object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array(added)),
            ("normalizer", .null),
            ("pre_tokenizer", byteLevel(addPrefixSpace: false, trimOffsets: true)),
            ("post_processor", byteLevel(addPrefixSpace: true, trimOffsets: false)),
            ("decoder", byteLevel(addPrefixSpace: true, trimOffsets: true)),
            ("model", .object([
                ("type", .string("BPE")), ("dropout", .null), ("unk_token", .null),
                ("continuing_subword_prefix", .null), ("end_of_word_suffix", .null),
                ("fuse_unk", .bool(false)), ("byte_fallback", .bool(false)), ("ignore_merges", .bool(false)),
                ("vocab", vocabValue), ("merges", .array(mergeValues)),
            ])),
        ])
        return Array((json.serialized(indent: 2) + "\n").utf8)
    }
}
