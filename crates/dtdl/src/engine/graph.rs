//! Walks over the element graph (`extends` chains, nested schemas, descendants) without
//! recursion and without revisiting shared elements.
//!
//! A stranger's model decides the shape of this graph: a chain of thousands of interfaces or
//! schemas must not overflow the stack, and a diamond-shaped `extends` lattice (every interface
//! extending the two before it) must not take exponential time. Every walk here is iterative
//! and visits each element once.

use std::collections::{HashMap, HashSet};

use super::Parser;
use super::resolve::Node;

/// Identity of an element across the parse and standard arenas.
pub(crate) type NodeKey = (usize, usize);

/// Longest chains already measured, by element: `None` when a cycle is reachable from it.
pub(crate) type ChainMemo = HashMap<NodeKey, Option<usize>>;

struct Frame<'s> {
    node: Node<'s>,
    children: Vec<Node<'s>>,
    next: usize,
    deepest: usize,
    cyclic: bool,
}

impl Parser<'_> {
    fn children<'s>(&'s self, node: Node<'s>, props: &[&str]) -> Vec<Node<'s>> {
        props
            .iter()
            .flat_map(|p| self.prop_nodes(node, p))
            .collect()
    }

    /// The number of elements satisfying `counts` on the longest path from `start` through
    /// `props`, or `None` when a cycle is reachable from `start`.
    pub(crate) fn longest_chain<'s>(
        &'s self,
        start: Node<'s>,
        props: &[&str],
        counts: impl Fn(&super::Element) -> bool,
        memo: &mut ChainMemo,
    ) -> Option<usize> {
        if let Some(known) = memo.get(&start.key()) {
            return *known;
        }
        let mut on_path: HashSet<NodeKey> = HashSet::from([start.key()]);
        let mut stack = vec![Frame {
            node: start,
            children: self.children(start, props),
            next: 0,
            deepest: 0,
            cyclic: false,
        }];
        let mut result = None;
        while let Some(top) = stack.last_mut() {
            if let Some(&child) = top.children.get(top.next) {
                top.next += 1;
                if on_path.contains(&child.key()) {
                    top.cyclic = true;
                    continue;
                }
                match memo.get(&child.key()) {
                    Some(Some(depth)) => top.deepest = top.deepest.max(*depth),
                    Some(None) => top.cyclic = true,
                    None => {
                        on_path.insert(child.key());
                        stack.push(Frame {
                            node: child,
                            children: self.children(child, props),
                            next: 0,
                            deepest: 0,
                            cyclic: false,
                        });
                    }
                }
                continue;
            }
            let Some(done) = stack.pop() else { break };
            on_path.remove(&done.node.key());
            let chain =
                (!done.cyclic).then(|| done.deepest + usize::from(counts(done.node.elem())));
            memo.insert(done.node.key(), chain);
            match (stack.last_mut(), chain) {
                (Some(parent), Some(depth)) => parent.deepest = parent.deepest.max(depth),
                (Some(parent), None) => parent.cyclic = true,
                (None, _) => result = chain,
            }
        }
        result
    }

    /// Elements reachable from `start` through `props` (not `start` itself), stopping once more
    /// than `limit` are found.
    pub(crate) fn reachable<'s>(
        &'s self,
        start: Node<'s>,
        props: &[&str],
        limit: usize,
    ) -> HashSet<NodeKey> {
        let mut seen = HashSet::new();
        let mut pending = vec![start];
        while let Some(node) = pending.pop() {
            for child in self.children(node, props) {
                if child.key() != start.key() && seen.insert(child.key()) {
                    if seen.len() > limit {
                        return seen;
                    }
                    pending.push(child);
                }
            }
        }
        seen
    }

    /// True when an element of `class` is reachable from `start` (inclusive) through `props`.
    pub(crate) fn reaches_class(&self, start: Node<'_>, props: &[&str], class: &str) -> bool {
        let mut seen = HashSet::from([start.key()]);
        let mut pending = vec![start];
        while let Some(node) = pending.pop() {
            if node.elem().class == class {
                return true;
            }
            for child in self.children(node, props) {
                if seen.insert(child.key()) {
                    pending.push(child);
                }
            }
        }
        false
    }

    /// Contents of an interface, inherited ones first in `extends` order (each element once).
    pub(crate) fn flattened_contents<'s>(&'s self, node: Node<'s>) -> Vec<Node<'s>> {
        let mut out = Vec::new();
        let mut seen_contents = HashSet::new();
        let mut seen_ifaces = HashSet::from([node.key()]);
        // Each frame: an interface and how many of its parents were expanded already.
        let mut stack = vec![(node, self.prop_nodes(node, "extends"), 0usize)];
        while let Some((_, parents, next)) = stack.last_mut() {
            if let Some(&parent) = parents.get(*next) {
                *next += 1;
                if seen_ifaces.insert(parent.key()) {
                    stack.push((parent, self.prop_nodes(parent, "extends"), 0));
                }
                continue;
            }
            let Some((done, _, _)) = stack.pop() else {
                break;
            };
            for content in self.prop_nodes(done, "contents") {
                if seen_contents.insert(content.key()) {
                    out.push(content);
                }
            }
        }
        out
    }
}
