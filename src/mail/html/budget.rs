//! Bounding the cost of parsing a hostile HTML body.
//!
//! The HTML tree builder (html5ever, under ammonia) does work that grows with the square of
//! the input for some shapes: every start tag can scan the stack of open elements, so 200 KB
//! of nested `<div>`s takes seconds, and re-opening misnested formatting elements
//! (`<b 1>…<b n>` closed by their parent, then text) clones all of them again and again, so
//! 35 KB of it build a gigabyte of DOM. Browsers cap nesting (Blink at 512); html5ever has no
//! such cap, and a pre-scan of the markup cannot know the tree builder's stack without
//! reimplementing it.
//!
//! So the tree builder itself measures: the HTML is parsed once into [`MeasuringSink`], a
//! DOM that keeps only names and parent links, fed in [`CHUNK`]-byte pieces. The sink stops
//! the parse (by unwinding, without the panic hook, caught here) as soon as an element would
//! sit deeper than [`BudgetLimits::max_depth`], or more than
//! [`BudgetLimits::max_elements`] elements, [`BudgetLimits::max_attribute_bytes`] of
//! attributes or [`BudgetLimits::max_operations`] tree operations have been asked for. What
//! ammonia then gets is the part of the input fed before that piece: the same parser on the
//! same bytes makes the same decisions, so its own parse stays within the same bounds.
//!
//! Stopping by unwinding needs `panic = "unwind"` (Rust's default); with `panic = "abort"` a
//! hostile message would end the process instead of being cut short.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use html5ever::interface::{ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::{Attribute, ExpandedName, ParseOpts, QualName, local_name, ns, parse_fragment};

/// Bytes of input fed to the parser at a time: what is kept of a body over the limits ends
/// at most this far before the point where it crossed them.
const CHUNK: usize = 512;

/// Bounds on the tree a body may build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Deepest element, counted from the fragment's root. Blink's parser stops nesting at
    /// 512; mail, nested-table newsletters included, seldom goes beyond a few dozen levels,
    /// and every level makes each later tag scan a longer stack of open elements.
    pub max_depth: usize,
    /// Most elements created, re-opened formatting elements included.
    pub max_elements: usize,
    /// Most attribute bytes across all created elements (re-opened elements copy theirs).
    pub max_attribute_bytes: usize,
    /// Most tree operations of any kind (insertions, text, parse errors…), which bounds the
    /// tokens processed.
    pub max_operations: usize,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        Self {
            max_depth: 256,
            max_elements: 100_000,
            max_attribute_bytes: 16 * 1024 * 1024,
            max_operations: 500_000,
        }
    }
}

/// The longest prefix of `html`, cut at a [`CHUNK`] boundary, whose tree stays within
/// `limits` (all of it when it does).
pub fn within_budget<'h>(html: &'h str, limits: &BudgetLimits) -> &'h str {
    let mut parser = parse_fragment(
        MeasuringSink::new(*limits),
        ParseOpts::default(),
        QualName::new(None, ns!(html), local_name!("div")),
        Vec::new(),
        false,
    );
    let mut fed = 0;
    while fed < html.len() {
        let end = html.floor_char_boundary((fed + CHUNK).min(html.len()));
        let piece = StrTendril::from_slice(&html[fed..end]);
        if panic::catch_unwind(AssertUnwindSafe(|| parser.process(piece))).is_err() {
            return &html[..fed];
        }
        fed = end;
    }
    match panic::catch_unwind(AssertUnwindSafe(|| parser.finish())) {
        Ok(()) => html,
        // The end of input closed something past the limits: keep all but the last piece.
        Err(_) => &html[..html.floor_char_boundary(html.len().saturating_sub(CHUNK))],
    }
}

/// Payload of the unwinding that stops a parse.
struct OverBudget;

fn stop() -> ! {
    panic::resume_unwind(Box::new(OverBudget))
}

type Handle = Rc<Node>;

/// A node of the measuring DOM: its name, for the tree builder, and its parent, for depth.
struct Node {
    /// `None` for the document, comments, processing instructions and template contents.
    name: Option<QualName>,
    parent: RefCell<Option<Handle>>,
    /// Weak links to the children, for reparenting; stale entries (children since moved)
    /// are skipped by checking the child's parent.
    children: RefCell<Vec<Weak<Node>>>,
    template_contents: Option<Handle>,
    annotation_xml_integration_point: bool,
}

impl Node {
    fn new(name: Option<QualName>) -> Self {
        Self {
            name,
            parent: RefCell::new(None),
            children: RefCell::new(Vec::new()),
            template_contents: None,
            annotation_xml_integration_point: false,
        }
    }
}

impl Drop for Node {
    /// Releases the chain of parents iteratively, so that a deep tree cannot overflow the
    /// stack when dropped.
    fn drop(&mut self) {
        let mut parent = self.parent.get_mut().take();
        while let Some(node) = parent {
            parent = Rc::try_unwrap(node)
                .ok()
                .and_then(|mut node| node.parent.get_mut().take());
        }
    }
}

/// The tree builder's sink for measuring: tracks structure, stores no content.
struct MeasuringSink {
    limits: BudgetLimits,
    document: Handle,
    /// Answered for a node without a name, which the tree builder never asks about.
    unnamed: QualName,
    elements: Cell<usize>,
    attribute_bytes: Cell<usize>,
    operations: Cell<usize>,
}

impl MeasuringSink {
    fn new(limits: BudgetLimits) -> Self {
        Self {
            limits,
            document: Rc::new(Node::new(None)),
            unnamed: QualName::new(None, ns!(html), local_name!("div")),
            elements: Cell::new(0),
            attribute_bytes: Cell::new(0),
            operations: Cell::new(0),
        }
    }

    fn count_operation(&self, weight: usize) {
        let operations = self.operations.get().saturating_add(weight);
        self.operations.set(operations);
        if operations > self.limits.max_operations {
            stop();
        }
    }

    /// Depth of `node` below the root, counted up to one past the limit.
    fn depth(&self, node: &Handle) -> usize {
        let mut depth = 0;
        let mut current = node.parent.borrow().clone();
        while let Some(parent) = current {
            depth += 1;
            if depth > self.limits.max_depth {
                break;
            }
            current = parent.parent.borrow().clone();
        }
        depth
    }

    fn attach(&self, parent: &Handle, child: &Handle) {
        *child.parent.borrow_mut() = Some(Rc::clone(parent));
        parent.children.borrow_mut().push(Rc::downgrade(child));
        if child.name.is_some() && self.depth(child) > self.limits.max_depth {
            stop();
        }
    }

    fn parent_of(node: &Handle) -> Option<Handle> {
        node.parent.borrow().clone()
    }
}

impl TreeSink for MeasuringSink {
    type Handle = Handle;
    type Output = ();
    type ElemName<'a> = ExpandedName<'a>;

    fn finish(self) {}

    fn parse_error(&self, _msg: Cow<'static, str>) {
        self.count_operation(1);
    }

    fn get_document(&self) -> Handle {
        Rc::clone(&self.document)
    }

    fn elem_name<'a>(&'a self, target: &'a Handle) -> ExpandedName<'a> {
        target.name.as_ref().unwrap_or(&self.unnamed).expanded()
    }

    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, flags: ElementFlags) -> Handle {
        self.count_operation(1);
        let elements = self.elements.get() + 1;
        self.elements.set(elements);
        let attribute_bytes = attrs
            .iter()
            .map(|attr| attr.name.local.len() + attr.value.len())
            .fold(self.attribute_bytes.get(), usize::saturating_add);
        self.attribute_bytes.set(attribute_bytes);
        if elements > self.limits.max_elements || attribute_bytes > self.limits.max_attribute_bytes
        {
            stop();
        }
        let mut node = Node::new(Some(name));
        node.annotation_xml_integration_point = flags.mathml_annotation_xml_integration_point;
        if flags.template {
            node.template_contents = Some(Rc::new(Node::new(None)));
        }
        Rc::new(node)
    }

    fn create_comment(&self, _text: StrTendril) -> Handle {
        self.count_operation(1);
        Rc::new(Node::new(None))
    }

    fn create_pi(&self, _target: StrTendril, _data: StrTendril) -> Handle {
        self.count_operation(1);
        Rc::new(Node::new(None))
    }

    fn append(&self, parent: &Handle, child: NodeOrText<Handle>) {
        self.count_operation(1);
        if let NodeOrText::AppendNode(child) = child {
            self.attach(parent, &child);
        }
    }

    fn append_based_on_parent_node(
        &self,
        element: &Handle,
        prev_element: &Handle,
        child: NodeOrText<Handle>,
    ) {
        if element.parent.borrow().is_some() {
            self.append_before_sibling(element, child);
        } else {
            self.append(prev_element, child);
        }
    }

    fn append_doctype_to_document(&self, _: StrTendril, _: StrTendril, _: StrTendril) {
        self.count_operation(1);
    }

    fn get_template_contents(&self, target: &Handle) -> Handle {
        // The tree builder only asks templates, which all have contents.
        target
            .template_contents
            .clone()
            .unwrap_or_else(|| Rc::new(Node::new(None)))
    }

    fn same_node(&self, x: &Handle, y: &Handle) -> bool {
        Rc::ptr_eq(x, y)
    }

    fn set_quirks_mode(&self, _mode: QuirksMode) {}

    fn append_before_sibling(&self, sibling: &Handle, new_node: NodeOrText<Handle>) {
        self.count_operation(1);
        if let (NodeOrText::AppendNode(child), Some(parent)) = (new_node, Self::parent_of(sibling))
        {
            self.attach(&parent, &child);
        }
    }

    fn add_attrs_if_missing(&self, _target: &Handle, attrs: Vec<Attribute>) {
        self.count_operation(attrs.len().max(1));
    }

    fn remove_from_parent(&self, target: &Handle) {
        self.count_operation(1);
        *target.parent.borrow_mut() = None;
    }

    fn reparent_children(&self, node: &Handle, new_parent: &Handle) {
        let children = std::mem::take(&mut *node.children.borrow_mut());
        self.count_operation(children.len().max(1));
        for child in children.iter().filter_map(Weak::upgrade) {
            let still_here = child
                .parent
                .borrow()
                .as_ref()
                .is_some_and(|parent| Rc::ptr_eq(parent, node));
            if still_here {
                self.attach(new_parent, &child);
            }
        }
    }

    fn is_mathml_annotation_xml_integration_point(&self, handle: &Handle) -> bool {
        handle.annotation_xml_integration_point
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn small() -> BudgetLimits {
        BudgetLimits {
            max_depth: 64,
            max_elements: 2_000,
            max_attribute_bytes: 64 * 1024,
            max_operations: 10_000,
        }
    }

    #[test]
    fn ordinary_markup_is_kept_whole() {
        let html = "<table><tr><td><p>Hi <b>there</b></p><img src=x></td></tr></table>".repeat(20);
        assert_eq!(within_budget(&html, &small()), html);
        assert_eq!(within_budget("", &small()), "");
        assert_eq!(within_budget("plain text", &small()), "plain text");
    }

    #[test]
    fn deep_nesting_is_cut_at_a_chunk() {
        let html = "<div>".repeat(10_000);
        let kept = within_budget(&html, &small());
        assert!(kept.len() <= 64 * 5, "{}", kept.len());
        assert_eq!(kept.len() % CHUNK, 0);
        // What is kept parses within the limits.
        assert_eq!(within_budget(kept, &small()), kept);
    }

    #[test]
    fn formatting_reconstruction_is_bounded() {
        // Misnested formatting elements that the tree builder clones again for every word.
        let mut html = String::from("<div>");
        for i in 0..2_000 {
            html.push_str(&format!("<b x={i}>"));
        }
        html.push_str("</div>");
        html.push_str(&"<p>x</p>".repeat(2_000));
        let started = Instant::now();
        let kept = within_budget(&html, &BudgetLimits::default());
        assert!(kept.len() < html.len());
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn many_elements_or_operations_are_cut() {
        let html = "<br>".repeat(5_000);
        assert!(within_budget(&html, &small()).len() < html.len());
        let errors = "</x>".repeat(20_000);
        assert!(within_budget(&errors, &small()).len() < errors.len());
        let big_attrs = format!("<p title=\"{}\">", "a".repeat(100_000));
        assert!(within_budget(&big_attrs, &small()).len() < big_attrs.len());
    }

    #[test]
    fn multi_byte_text_is_cut_on_char_boundaries() {
        let html = format!("{}{}", "é".repeat(5_000), "<div>".repeat(10_000));
        let kept = within_budget(&html, &small());
        assert!(kept.len() < html.len());
        assert!(html.is_char_boundary(kept.len()));
    }
}
