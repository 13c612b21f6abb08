/// Evaluates a parsed template: scopes, statements and expressions with jinja2's semantics.
///
/// Scoping follows jinja2: `set` inside a `for` body or a macro binds in that body's own frame (a new
/// one for each loop iteration) and does not leak out, which is why templates carry state in
/// `namespace()` objects; `if` blocks do not open a frame.
final class TemplateInterpreter {
    /// One frame of variables; frames are shared by reference so a macro sees later top-level `set`s.
    final class Frame {
        var variables: [String: TemplateValue]
        init(_ variables: [String: TemplateValue] = [:]) { self.variables = variables }
    }

    enum Flow { case normal, breakLoop, continueLoop }

    private var frames: [Frame]
    /// Guards against runaway recursion of macros.
    private var depth = 0

    init(globals: [String: TemplateValue]) {
        frames = [Frame(globals)]
    }

    func render(_ nodes: [TemplateNode]) throws(ChatTemplateError) -> String {
        var out = ""
        _ = try execute(nodes, into: &out)
        return out
    }

    // MARK: Statements

    private func execute(_ nodes: [TemplateNode], into out: inout String) throws(ChatTemplateError) -> Flow {
        for node in nodes {
            let flow = try execute(node, into: &out)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func execute(_ node: TemplateNode, into out: inout String) throws(ChatTemplateError) -> Flow {
        switch node {
        case .text(let s):
            out += s
        case .output(let expr):
            out += pythonStr(try evaluate(expr))
        case .conditional(let branches, let otherwise):
            for branch in branches where try evaluate(branch.condition).truthy {
                return try execute(branch.body, into: &out)
            }
            return try execute(otherwise, into: &out)
        case .loop(let target, let iterable, let filter, let body, let otherwise):
            try executeLoop(target: target, iterable: iterable, filter: filter, body: body, otherwise: otherwise, into: &out)
        case .assign(let target, let expr):
            try assign(target, try evaluate(expr))
        case .assignBlock(let target, let filters, let body):
            var captured = ""
            _ = try execute(body, into: &captured)
            var value = TemplateValue.string(captured)
            for (name, args) in filters { value = try applyFilter(name, to: value, args) }
            try assign(target, value)
        case .macro(let macro):
            frames[frames.count - 1].variables[macro.name] = makeMacro(macro, caller: nil)
        case .callBlock(let callExpr, let body):
            guard case .call(let calleeExpr, let args) = callExpr else { return .normal }
            let callee = try evaluate(calleeExpr)
            let captured = frames
            let caller = TemplateFunction(name: "caller") { [unowned self] _, _ throws(ChatTemplateError) in
                let saved = self.frames
                self.frames = captured + [Frame()]
                defer { self.frames = saved }
                var text = ""
                _ = try self.execute(body, into: &text)
                return .string(text)
            }
            var (positional, keyword) = try evaluateArguments(args)
            keyword.append(("caller", .function(caller)))
            out += pythonStr(try call(callee, positional, keyword))
        case .filterBlock(let filters, let body):
            var captured = ""
            let flow = try execute(body, into: &captured)
            var value = TemplateValue.string(captured)
            for (name, args) in filters { value = try applyFilter(name, to: value, args) }
            out += pythonStr(value)
            return flow
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        }
        return .normal
    }

    private func executeLoop(
        target: TemplateTarget, iterable: TemplateExpr, filter: TemplateExpr?, body: [TemplateNode],
        otherwise: [TemplateNode], into out: inout String
    ) throws(ChatTemplateError) {
        var items = try evaluate(iterable).iterate()
        if let filter {
            var kept: [TemplateValue] = []
            for item in items {
                frames.append(Frame())
                defer { frames.removeLast() }
                try assign(target, item)
                if try evaluate(filter).truthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            _ = try execute(otherwise, into: &out)
            return
        }
        let count = items.count
        for (i, item) in items.enumerated() {
            var loop = TemplateDict()
            loop["index"] = .int(i + 1)
            loop["index0"] = .int(i)
            loop["revindex"] = .int(count - i)
            loop["revindex0"] = .int(count - i - 1)
            loop["first"] = .bool(i == 0)
            loop["last"] = .bool(i == count - 1)
            loop["length"] = .int(count)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = i > 0 ? items[i - 1] : .undefined(message: "there is no previous item")
            loop["nextitem"] = i + 1 < count ? items[i + 1] : .undefined(message: "there is no next item")
            loop["cycle"] = .function(TemplateFunction(name: "cycle") { args, _ throws(ChatTemplateError) in
                guard !args.isEmpty else { throw .render("no items for cycling given") }
                return args[i % args.count]
            })
            frames.append(Frame(["loop": .dict(loop)]))
            defer { frames.removeLast() }
            try assign(target, item)
            if try execute(body, into: &out) == .breakLoop { break }
        }
    }

    private func assign(_ target: TemplateTarget, _ value: TemplateValue) throws(ChatTemplateError) {
        switch target {
        case .name(let n):
            frames[frames.count - 1].variables[n] = value
        case .tuple(let targets):
            let items = try value.iterate()
            guard items.count == targets.count else {
                throw .render(items.count > targets.count
                    ? "too many values to unpack (expected \(targets.count))"
                    : "not enough values to unpack (expected \(targets.count), got \(items.count))")
            }
            for (t, v) in zip(targets, items) { try assign(t, v) }
        case .attribute(let objectExpr, let name):
            guard case .namespace(let ns) = try evaluate(objectExpr) else {
                throw .render("cannot assign attribute on non-namespace object")
            }
            ns.attributes[name] = value
        }
    }

    private func makeMacro(_ macro: TemplateMacro, caller: TemplateFunction?) -> TemplateValue {
        let captured = frames
        return .function(TemplateFunction(name: macro.name) { [unowned self] args, kwargs throws(ChatTemplateError) in
            guard args.count <= macro.parameters.count else {
                throw .render("macro '\(macro.name)' takes not more than \(macro.parameters.count) argument(s)")
            }
            guard self.depth < 100 else { throw .render("maximum recursion depth exceeded") }
            let saved = self.frames
            let frame = Frame()
            self.frames = captured + [frame]
            self.depth += 1
            defer {
                self.frames = saved
                self.depth -= 1
            }
            for (i, parameter) in macro.parameters.enumerated() {
                if i < args.count {
                    frame.variables[parameter.name] = args[i]
                } else if let kw = kwargs.first(where: { $0.0 == parameter.name }) {
                    frame.variables[parameter.name] = kw.1
                } else if let d = parameter.defaultValue {
                    frame.variables[parameter.name] = try self.evaluate(d)
                } else {
                    frame.variables[parameter.name] = .undefined(message: "parameter '\(parameter.name)' was not provided")
                }
            }
            for (name, value) in kwargs where name == "caller" { frame.variables["caller"] = value }
            var text = ""
            _ = try self.execute(macro.body, into: &text)
            return .string(text)
        })
    }

    // MARK: Expressions

    func lookup(_ name: String) -> TemplateValue {
        for frame in frames.reversed() {
            if let v = frame.variables[name] { return v }
        }
        return .undefinedName(name)
    }

    func evaluate(_ expr: TemplateExpr) throws(ChatTemplateError) -> TemplateValue {
        switch expr {
        case .constant(let c):
            switch c {
            case .none: return .none
            case .bool(let b): return .bool(b)
            case .int(let i): return .int(i)
            case .double(let d): return .double(d)
            case .string(let s): return .string(s)
            }
        case .name(let n):
            return lookup(n)
        case .list(let items):
            var values: [TemplateValue] = []
            for item in items { values.append(try evaluate(item)) }
            return .list(values)
        case .tuple(let items):
            var values: [TemplateValue] = []
            for item in items { values.append(try evaluate(item)) }
            return .tuple(values)
        case .dict(let items):
            var dict = TemplateDict()
            for item in items { dict[try evaluate(item.key)] = try evaluate(item.value) }
            return .dict(dict)
        case .attribute(let objectExpr, let name):
            return try getAttribute(try evaluate(objectExpr), name)
        case .item(let objectExpr, let keyExpr):
            return try getItem(try evaluate(objectExpr), try evaluate(keyExpr))
        case .slice(let objectExpr, let start, let stop, let step):
            let object = try evaluate(objectExpr)
            return try slice(object, start.map { e throws(ChatTemplateError) in try evaluate(e) },
                             stop.map { e throws(ChatTemplateError) in try evaluate(e) },
                             step.map { e throws(ChatTemplateError) in try evaluate(e) })
        case .call(let calleeExpr, let args):
            let callee = try evaluate(calleeExpr)
            let (positional, keyword) = try evaluateArguments(args)
            return try call(callee, positional, keyword)
        case .filter(let valueExpr, let name, let args):
            return try applyFilter(name, to: try evaluate(valueExpr), args)
        case .test(let valueExpr, let name, let args, let negated):
            let (positional, _) = try evaluateArguments(args)
            let result = try applyTest(name, try evaluate(valueExpr), positional)
            return .bool(result != negated)
        case .negate(let e):
            let v = try evaluate(e)
            switch v {
            case .int(let i):
                guard i != .min else { throw .render("integer overflow") }
                return .int(-i)
            case .double(let d): return .double(-d)
            case .bool(let b): return .int(b ? -1 : 0)
            case .undefined(let m): throw .render(m)
            default: throw .render("bad operand type for unary -: '\(v.pythonTypeName)'")
            }
        case .plus(let e):
            let v = try evaluate(e)
            if case .undefined(let m) = v { throw .render(m) }
            guard v.numeric != nil else { throw .render("bad operand type for unary +: '\(v.pythonTypeName)'") }
            return v
        case .not(let e):
            return .bool(!(try evaluate(e).truthy))
        case .and(let a, let b):
            let l = try evaluate(a)
            return l.truthy ? try evaluate(b) : l
        case .or(let a, let b):
            let l = try evaluate(a)
            return l.truthy ? l : try evaluate(b)
        case .binary(let op, let a, let b):
            return try binaryOperation(op, try evaluate(a), try evaluate(b))
        case .compare(let first, let ops):
            var lhs = try evaluate(first)
            for (op, rhsExpr) in ops {
                let rhs = try evaluate(rhsExpr)
                guard try compare(op, lhs, rhs) else { return .bool(false) }
                lhs = rhs
            }
            return .bool(true)
        case .conditional(let condition, let then, let otherwise):
            if try evaluate(condition).truthy { return try evaluate(then) }
            if let otherwise { return try evaluate(otherwise) }
            return .undefined(message: "the inline if-expression evaluated to false and no else section was defined.")
        }
    }

    func evaluateArguments(_ args: TemplateArguments) throws(ChatTemplateError) -> ([TemplateValue], [(String, TemplateValue)]) {
        var positional: [TemplateValue] = []
        for a in args.positional { positional.append(try evaluate(a)) }
        var keyword: [(String, TemplateValue)] = []
        for k in args.keyword { keyword.append((k.name, try evaluate(k.value))) }
        return (positional, keyword)
    }

    func call(_ callee: TemplateValue, _ args: [TemplateValue], _ kwargs: [(String, TemplateValue)]) throws(ChatTemplateError) -> TemplateValue {
        switch callee {
        case .function(let f): return try f.call(args, kwargs)
        case .undefined(let m): throw .render(m)
        default: throw .render("'\(callee.pythonTypeName)' object is not callable")
        }
    }

    private func applyFilter(_ name: String, to value: TemplateValue, _ args: TemplateArguments) throws(ChatTemplateError) -> TemplateValue {
        let (positional, keyword) = try evaluateArguments(args)
        return try TemplateBuiltins.filter(name, value, positional, keyword, interpreter: self)
    }

    func applyTest(_ name: String, _ value: TemplateValue, _ args: [TemplateValue]) throws(ChatTemplateError) -> Bool {
        try TemplateBuiltins.test(name, value, args)
    }
}
