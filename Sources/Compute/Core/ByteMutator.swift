/// Corrupts byte strings the way hostile or broken peers do, reproducibly from a seed: the mutation
/// engine of the decoders' fuzz tests (frames, handles, notices, safetensors, JSON), shared so that
/// every module's tests mutate alike.
///
/// Each call applies one of: a bit flip, a byte set to a boundary value, an insert or a delete of a
/// few bytes, a truncation, a little-endian length field overwritten with a near or extreme value,
/// a splice of a range from another valid input, or a duplicated range.
public struct ByteMutator {
    public var rng: SplitMix64
    /// Other valid inputs to splice from (may be empty).
    public var donors: [[UInt8]]

    public init(seed: UInt64, donors: [[UInt8]] = []) {
        rng = SplitMix64(seed: seed)
        self.donors = donors
    }

    /// `input` with 1...`maxMutations` mutations applied.
    public mutating func mutated(_ input: [UInt8], maxMutations: Int = 3) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...max(1, maxMutations), using: &rng) { mutate(&bytes) }
        return bytes
    }

    public mutating func mutate(_ bytes: inout [UInt8]) {
        guard !bytes.isEmpty else {
            bytes = (0..<Int.random(in: 1...8, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            return
        }
        let at = Int.random(in: 0..<bytes.count, using: &rng)
        switch Int.random(in: 0..<9, using: &rng) {
        case 0:  // bit flip
            bytes[at] ^= 1 << UInt8.random(in: 0...7, using: &rng)
        case 1:  // boundary byte
            bytes[at] = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x22, 0x5C, 0x7B, 0x5B].randomElement(using: &rng)!
        case 2:  // insert
            let garbage = (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            bytes.insert(contentsOf: garbage, at: Int.random(in: 0...bytes.count, using: &rng))
        case 3:  // delete
            bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...8, using: &rng)))
        case 4:  // truncate
            bytes.removeLast(Int.random(in: 1...bytes.count, using: &rng))
        case 5, 6:  // a length or offset field: 1, 2, 4 or 8 bytes, near its value or extreme
            let width = [1, 2, 4, 8].randomElement(using: &rng)!
            guard at + width <= bytes.count else { bytes[at] ^= 0xFF; return }
            var old: UInt64 = 0
            for i in 0..<width { old |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            let new: UInt64 = switch Int.random(in: 0..<4, using: &rng) {
            case 0: old &+ UInt64(bitPattern: Int64.random(in: -4...4, using: &rng))
            case 1: [0, UInt64.max, UInt64(Int64.max), UInt64(Int64.max) &+ 1, UInt64(UInt32.max), 1 << 31].randomElement(using: &rng)!
            case 2: UInt64.random(in: 0...4096, using: &rng)
            default: rng.next()
            }
            for i in 0..<width { bytes[at + i] = UInt8(truncatingIfNeeded: new >> (8 * UInt64(i))) }
        case 7:  // splice from a donor (or from itself)
            let donor = donors.isEmpty ? bytes : donors.randomElement(using: &rng)!
            guard !donor.isEmpty else { return }
            let from = Int.random(in: 0..<donor.count, using: &rng)
            let piece = donor[from..<min(donor.count, from + Int.random(in: 1...64, using: &rng))]
            let end = min(bytes.count, at + Int.random(in: 0...64, using: &rng))
            bytes.replaceSubrange(at..<end, with: piece)
        default:  // duplicate a range
            let piece = bytes[at..<min(bytes.count, at + Int.random(in: 1...32, using: &rng))]
            bytes.insert(contentsOf: piece, at: Int.random(in: 0...bytes.count, using: &rng))
        }
    }
}
