import Synchronization

/// Byte-pair encoding as Hugging Face tokenizers' `BPE` model: a word starts as one token per
/// character (with `continuing_subword_prefix` / `end_of_word_suffix` where set; a character missing
/// from the vocabulary becomes its `<0xNN>` byte tokens with `byte_fallback`, else the unknown token,
/// fused with neighbouring unknowns under `fuse_unk`, else nothing) and the adjacent pair with the
/// lowest merge rank is merged until no pair has a merge, leftmost first among equal ranks — the order
/// of Hugging Face's priority queue. A heap keeps long words O(n log n).
///
/// Words from the ByteLevel pre-tokenizer arrive as UTF-8 bytes and, when every byte's character is in
/// the vocabulary, start from a 256-entry table without building strings.
final class BPEModel: Sendable {
    struct Merge {
        var rank: Int32
        var result: Int32
    }

    let vocabulary: [String: Int32]
    /// The merges by rank, as written in the file.
    let mergeList: [(String, String)]
    /// (left id, right id) → rank and merged id.
    let merges: MergeTable
    /// Token id of each byte's byte-level character; nil unless all 256 are in the vocabulary and no
    /// prefix or suffix changes the first symbols.
    let byteIds: [Int32]?
    /// Ids of single-character tokens, by scalar value.
    let scalarIds: [UInt32: Int32]
    /// When set, a word that is itself in the vocabulary is not split (`ignore_merges`).
    let ignoreMerges: Bool
    let unknownId: Int32?
    let fuseUnknown: Bool
    /// `<0xNN>` token ids by byte, when `byte_fallback` is on.
    let byteFallbackIds: [Int32?]?
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?

    private let byteCache = Mutex<[[UInt8]: [Int32]]>([:])
    private let stringCache = Mutex<[String: [Int32]]>([:])
    private static let cacheLimit = 10_000
    /// Longer words are not cached (as Hugging Face): a whole SentencePiece-style text is one word.
    private static let cacheMaxWordBytes = 256

    init(json model: JSONValue) throws(TokenizerError) {
        if let dropout = model["dropout"], !dropout.isNull, dropout.doubleValue != 0 {
            throw TokenizerError(.unsupported, "unsupported BPE option dropout = \(dropout.serialized()) (only null)")
        }
        func optionalString(_ key: String) throws(TokenizerError) -> String? {
            guard let v = model[key], !v.isNull else { return nil }
            guard let s = v.stringValue else { throw TokenizerError(.invalidFile, "BPE \(key) is not a string") }
            return s
        }
        let prefix = try optionalString("continuing_subword_prefix")
        let suffix = try optionalString("end_of_word_suffix")
        let unk = try optionalString("unk_token")
        continuingSubwordPrefix = prefix
        endOfWordSuffix = suffix

        // Vocabulary.
        guard let vocabMembers = model["vocab"]?.objectMembers else {
            throw TokenizerError(.invalidFile, "model has no vocab object")
        }
        guard !vocabMembers.isEmpty else { throw TokenizerError(.invalidFile, "model vocab is empty") }
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(vocabMembers.count)
        var tokenOfId: [Int32: String] = [:]
        tokenOfId.reserveCapacity(vocabMembers.count)
        for (token, value) in vocabMembers {
            guard let id = value.intValue, id >= 0, id < Tokenizer.maxTokenId else {
                throw TokenizerError(.invalidFile, "vocab entry \(token.debugDescription) has id \(value.serialized()), not an integer in 0..<\(Tokenizer.maxTokenId)")
            }
            if let other = tokenOfId[Int32(id)], other != token {
                throw TokenizerError(.invalidFile, "vocab gives id \(id) to both \(other.debugDescription) and \(token.debugDescription)")
            }
            if vocabulary[token] != nil {
                throw TokenizerError(.invalidFile, "vocab lists \(token.debugDescription) twice")
            }
            vocabulary[token] = Int32(id)
            tokenOfId[Int32(id)] = token
        }
        self.vocabulary = vocabulary

        // Merges: "a b" strings or ["a", "b"] pairs; a later duplicate wins, as in Hugging Face.
        var mergeList: [(String, String)] = []
        var table: [UInt64: Merge] = [:]
        for (rank, entry) in (model["merges"]?.arrayValue ?? []).enumerated() {
            let pair: (String, String)
            if let s = entry.stringValue {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError(.invalidMerges, "merge \(rank) '\(s)' is not two tokens separated by a space") }
                pair = (String(parts[0]), String(parts[1]))
            } else if let a = entry.arrayValue, a.count == 2, let l = a[0].stringValue, let r = a[1].stringValue {
                pair = (l, r)
            } else {
                throw TokenizerError(.invalidMerges, "merge \(rank) \(entry.serialized()) is not a pair of tokens")
            }
            guard let l = vocabulary[pair.0], let r = vocabulary[pair.1] else {
                throw TokenizerError(.invalidMerges, "merge \(rank) '\(pair.0) \(pair.1)' uses a token that is not in the vocabulary")
            }
            var right = pair.1
            if let prefix, right.hasPrefix(prefix) { right.removeFirst(prefix.count) }
            guard let result = vocabulary[pair.0 + right] else {
                throw TokenizerError(.invalidMerges, "merge \(rank) '\(pair.0) \(pair.1)' makes '\(pair.0 + right)', which is not in the vocabulary")
            }
            mergeList.append(pair)
            table[Self.key(l, r)] = Merge(rank: Int32(rank), result: result)
        }
        self.mergeList = mergeList
        self.merges = MergeTable(table)

        var scalarIds: [UInt32: Int32] = [:]
        for (token, id) in vocabulary {
            let scalars = token.unicodeScalars
            if scalars.count == 1, let s = scalars.first { scalarIds[s.value] = id }
        }
        self.scalarIds = scalarIds
        let bytes = ByteLevel.byteToScalar.compactMap { scalarIds[$0.value] }
        byteIds = bytes.count == 256 && prefix == nil && suffix == nil ? bytes : nil
        ignoreMerges = model["ignore_merges"]?.boolValue ?? false
        fuseUnknown = model["fuse_unk"]?.boolValue ?? false
        if let unk {
            guard let id = vocabulary[unk] else {
                throw TokenizerError(.invalidFile, "BPE unk_token \(unk.debugDescription) is not in the vocabulary")
            }
            unknownId = id
        } else {
            unknownId = nil
        }
        if model["byte_fallback"]?.boolValue == true {
            byteFallbackIds = (0..<256).map { b in vocabulary["<0x" + Self.hex2(UInt8(b)) + ">"] }
        } else {
            byteFallbackIds = nil
        }
    }

    static func hex2(_ b: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        MergeTable.key(a, b)
    }

    /// The ids of one ByteLevel word (its UTF-8 bytes, standing for their byte-level characters).
    func encode(bytes word: [UInt8], into out: inout [Int32]) {
        guard let byteIds else {
            encode(word: ByteLevel.encode(word), into: &out)
            return
        }
        if word.count == 1 {
            out.append(byteIds[Int(word[0])])
            return
        }
        let cacheable = word.count < Self.cacheMaxWordBytes
        if cacheable, let hit = byteCache.withLock({ $0[word] }) {
            out += hit
            return
        }
        var ids: [Int32]
        if ignoreMerges, let id = vocabulary[ByteLevel.encode(word)] {
            ids = [id]
        } else {
            ids = word.map { byteIds[Int($0)] }
            merge(&ids)
        }
        if cacheable {
            byteCache.withLock { cache in
                if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
                cache[word] = ids
            }
        }
        out += ids
    }

    /// The ids of one word.
    func encode(word: String, into out: inout [Int32]) {
        guard !word.isEmpty else { return }
        let cacheable = word.utf8.count < Self.cacheMaxWordBytes
        if cacheable, let hit = stringCache.withLock({ $0[word] }) {
            out += hit
            return
        }
        var ids: [Int32]
        if ignoreMerges, let id = vocabulary[word] {
            ids = [id]
        } else {
            ids = initialSymbols(word)
            merge(&ids)
        }
        if cacheable {
            stringCache.withLock { cache in
                if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
                cache[word] = ids
            }
        }
        out += ids
    }

    /// One symbol per character, as Hugging Face's `BPE::merge_word`.
    private func initialSymbols(_ word: String) -> [Int32] {
        var ids: [Int32] = []
        var pendingUnknown = false
        let scalars = Array(word.unicodeScalars)
        let plain = continuingSubwordPrefix == nil && endOfWordSuffix == nil
        for (k, s) in scalars.enumerated() {
            var piece: String? = nil
            let id: Int32?
            if plain {
                id = scalarIds[s.value]
            } else {
                var text = k > 0 ? continuingSubwordPrefix ?? "" : ""
                text.unicodeScalars.append(s)
                if k == scalars.count - 1 { text += endOfWordSuffix ?? "" }
                piece = text
                id = vocabulary[text]
            }
            if let id {
                if pendingUnknown, let unknownId { ids.append(unknownId) }
                pendingUnknown = false
                ids.append(id)
                continue
            }
            if let byteFallbackIds {
                let bytes = Array((piece ?? String(s)).utf8)
                let fallback = bytes.compactMap { byteFallbackIds[Int($0)] }
                if fallback.count == bytes.count {
                    ids += fallback  // (a pending unknown stays pending, as in Hugging Face)
                    continue
                }
            }
            if let unknownId {
                if pendingUnknown && !fuseUnknown { ids.append(unknownId) }
                pendingUnknown = true
            }
        }
        if pendingUnknown, let unknownId { ids.append(unknownId) }
        return ids
    }

    /// Applies the merges to `ids` in rank order.
    private func merge(_ ids: inout [Int32]) {
        guard ids.count > 1 else { return }
        // Doubly linked symbols; a merged symbol keeps the left one's position.
        var next = Array(1...ids.count)
        next[ids.count - 1] = -1
        var prev = Array(-1..<(ids.count - 1))
        var alive = [Bool](repeating: true, count: ids.count)
        var heap = MergeHeap()
        for i in 0..<(ids.count - 1) {
            if let m = merges[Self.key(ids[i], ids[i + 1])] { heap.push(rank: m.rank, position: i) }
        }
        while let (rank, pos) = heap.pop() {
            let right = next[pos]
            // Skip entries made stale by an earlier merge: the pair at `pos` changed.
            guard alive[pos], right >= 0, let m = merges[Self.key(ids[pos], ids[right])], m.rank == rank else { continue }
            ids[pos] = m.result
            alive[right] = false
            next[pos] = next[right]
            if next[pos] >= 0 { prev[next[pos]] = pos }
            if prev[pos] >= 0, let l = merges[Self.key(ids[prev[pos]], ids[pos])] { heap.push(rank: l.rank, position: prev[pos]) }
            if next[pos] >= 0, let r = merges[Self.key(ids[pos], ids[next[pos]])] { heap.push(rank: r.rank, position: pos) }
        }
        var result: [Int32] = []
        result.reserveCapacity(ids.count)
        var i = 0
        while i >= 0 {
            result.append(ids[i])
            i = next[i]
        }
        ids = result
    }
}

/// The merges as an open-addressing hash table with a multiplicative hash: the merge loop looks up
/// every adjacent pair, and the standard dictionary's seeded SipHash dominated it.
struct MergeTable: Sendable {
    private let keys: [UInt64]
    private let values: [BPEModel.Merge]
    private let mask: Int
    private let shift: UInt64
    /// Ids are below 2^24, so no key is all ones.
    private static let empty = UInt64.max

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    init(_ merges: [UInt64: BPEModel.Merge]) {
        var capacity = 16
        while capacity < merges.count * 2 { capacity <<= 1 }
        var keys = [UInt64](repeating: Self.empty, count: capacity)
        var values = [BPEModel.Merge](repeating: BPEModel.Merge(rank: 0, result: 0), count: capacity)
        let bits = UInt64(capacity.trailingZeroBitCount)
        shift = 64 - bits
        mask = capacity - 1
        for (k, v) in merges {
            var slot = Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> shift)
            while keys[slot] != Self.empty { slot = (slot + 1) & mask }
            keys[slot] = k
            values[slot] = v
        }
        self.keys = keys
        self.values = values
    }

    @inline(__always) subscript(key: UInt64) -> BPEModel.Merge? {
        var slot = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
        while true {
            let k = keys[slot]
            if k == key { return values[slot] }
            if k == Self.empty { return nil }
            slot = (slot + 1) & mask
        }
    }
}

/// A binary min-heap of (rank, position), ordered by rank then position.
private struct MergeHeap {
    private var items: [(rank: Int32, position: Int)] = []

    @inline(__always) private static func less(_ a: (rank: Int32, position: Int), _ b: (rank: Int32, position: Int)) -> Bool {
        a.rank != b.rank ? a.rank < b.rank : a.position < b.position
    }

    mutating func push(rank: Int32, position: Int) {
        items.append((rank, position))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.less(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (Int32, Int)? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var smallest = i
                if l < items.count && Self.less(items[l], items[smallest]) { smallest = l }
                if r < items.count && Self.less(items[r], items[smallest]) { smallest = r }
                if smallest == i { break }
                items.swapAt(i, smallest)
                i = smallest
            }
        }
        return (top.rank, top.position)
    }
}
