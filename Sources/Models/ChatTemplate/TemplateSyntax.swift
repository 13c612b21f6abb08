/// The syntax tree of a parsed template.

/// An expression inside `{{ }}` or a tag.
indirect enum TemplateExpr: Sendable {
    case constant(TemplateConstant)
    case name(String)
    case list([TemplateExpr])
    case tuple([TemplateExpr])
    case dict([(key: TemplateExpr, value: TemplateExpr)])
    /// `a.b` (tries the attribute, then the item, as jinja2's `getattr`).
    case attribute(TemplateExpr, String)
    /// `a[b]` (tries the item, then the attribute).
    case item(TemplateExpr, TemplateExpr)
    case slice(TemplateExpr, start: TemplateExpr?, stop: TemplateExpr?, step: TemplateExpr?)
    case call(TemplateExpr, TemplateArguments)
    case filter(TemplateExpr, name: String, TemplateArguments)
    case test(TemplateExpr, name: String, TemplateArguments, negated: Bool)
    case negate(TemplateExpr)
    case plus(TemplateExpr)
    case not(TemplateExpr)
    case and(TemplateExpr, TemplateExpr)
    case or(TemplateExpr, TemplateExpr)
    /// `+ - * / // % ** ~`.
    case binary(String, TemplateExpr, TemplateExpr)
    /// A chain `a < b <= c`: operators `== != < <= > >= in notin`.
    case compare(TemplateExpr, [(op: String, rhs: TemplateExpr)])
    /// `a if cond else b`; a missing `else` yields undefined.
    case conditional(condition: TemplateExpr, then: TemplateExpr, otherwise: TemplateExpr?)
}

enum TemplateConstant: Sendable {
    case none, bool(Bool), int(Int), double(Double), string(String)
}

struct TemplateArguments: Sendable {
    var positional: [TemplateExpr] = []
    var keyword: [(name: String, value: TemplateExpr)] = []
}

/// What `set` and `for` assign to.
indirect enum TemplateTarget: Sendable {
    case name(String)
    case tuple([TemplateTarget])
    /// `set ns.attr = ...` (only namespaces accept it).
    case attribute(TemplateExpr, String)
}

struct TemplateMacro: Sendable {
    var name: String
    var parameters: [(name: String, defaultValue: TemplateExpr?)]
    var body: [TemplateNode]
}

/// A statement or piece of output.
indirect enum TemplateNode: Sendable {
    case text(String)
    case output(TemplateExpr)
    case conditional(branches: [(condition: TemplateExpr, body: [TemplateNode])], otherwise: [TemplateNode])
    case loop(target: TemplateTarget, iterable: TemplateExpr, filter: TemplateExpr?, body: [TemplateNode], otherwise: [TemplateNode])
    case assign(TemplateTarget, TemplateExpr)
    /// `{% set x %}...{% endset %}`, optionally piped through filters.
    case assignBlock(TemplateTarget, filters: [(name: String, TemplateArguments)], body: [TemplateNode])
    case macro(TemplateMacro)
    /// `{% call macro(...) %}body{% endcall %}`: the macro can render `body` with `caller()`.
    case callBlock(TemplateExpr, body: [TemplateNode])
    /// `{% filter name %}...{% endfilter %}`.
    case filterBlock(filters: [(name: String, TemplateArguments)], body: [TemplateNode])
    case breakLoop
    case continueLoop
}
