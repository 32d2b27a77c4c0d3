//! The file's schema → a tree of [`Node`]s that says how rows are rebuilt from the leaf
//! columns' (definition level, repetition level, value) triplets. Built once per file; every
//! column's type is checked here, so reading never meets a type it cannot map.
//!
//! The list and map layouts (including the legacy two-level lists) follow the Parquet
//! format's LogicalTypes.md backward-compatibility rules, as the `parquet` crate's own record
//! reader does.

use std::collections::HashMap;

use parquet::basic::{ConvertedType, LogicalType, Repetition};
use parquet::schema::types::{SchemaDescriptor, Type, TypePtr};

use super::values::{kind_of, Kind};

/// How one field of a row is rebuilt.
#[derive(Debug)]
pub enum Node {
    /// A leaf column (by index in the file's column list).
    Leaf { col: usize, kind: Kind },
    /// An optional field: present when the definition level is above `def`.
    Opt { def: i16, child: Box<Node> },
    /// A struct.
    Group { fields: Vec<(String, Node)> },
    /// A list: elements while the repetition level is above `rep`; empty when the definition
    /// level is not above `def`.
    List {
        def: i16,
        rep: i16,
        child: Box<Node>,
    },
    /// A map, read like a list of (key, value) pairs; a key-only map has no value.
    Map {
        def: i16,
        rep: i16,
        key: Box<Node>,
        value: Option<Box<Node>>,
    },
}

impl Node {
    /// The first leaf column below: the one whose levels drive this node.
    pub fn first(&self) -> usize {
        match self {
            Node::Leaf { col, .. } => *col,
            Node::Opt { child, .. } | Node::List { child, .. } => child.first(),
            Node::Group { fields } => fields[0].1.first(),
            Node::Map { key, .. } => key.first(),
        }
    }

    /// The column of a leaf, optional or not: its cell is the node's value, null where the
    /// triplet is not defined (`V::Null`, or `""` in a string column: see `Column::defined`).
    /// `None` for the other nodes.
    #[inline(always)]
    pub fn leaf_column(&self) -> Option<usize> {
        match self {
            Node::Leaf { col, .. } => Some(*col),
            Node::Opt { child, .. } => match **child {
                Node::Leaf { col, .. } => Some(col),
                _ => None,
            },
            _ => None,
        }
    }

    /// Every leaf column below.
    pub fn leaves(&self, out: &mut Vec<usize>) {
        match self {
            Node::Leaf { col, .. } => out.push(*col),
            Node::Opt { child, .. } | Node::List { child, .. } => child.leaves(out),
            Node::Group { fields } => fields.iter().for_each(|(_, n)| n.leaves(out)),
            Node::Map { key, value, .. } => {
                key.leaves(out);
                if let Some(v) = value {
                    v.leaves(out);
                }
            }
        }
    }
}

/// The top-level fields of a row, each with how to rebuild it.
#[derive(Debug)]
pub struct Plan {
    pub fields: Vec<(String, Node)>,
    /// Each leaf column's dotted path (for error messages).
    pub column_names: Vec<String>,
}

/// A Parquet schema the reader cannot turn into records: which column, and why.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("column `{column}` is missing")]
    Missing { column: String },
    #[error("column `{column}` has type {type_}, which has no record value")]
    NoRecordValue { column: String, type_: String },
    /// A group of a shape the Parquet spec does not allow (`shape` says which).
    #[error("column `{column}` {shape}")]
    Shape { column: String, shape: &'static str },
}

/// Builds the plan, or names the first column whose type cannot be mapped.
pub fn plan(schema: &SchemaDescriptor) -> Result<Plan, SchemaError> {
    let mut index = HashMap::new();
    let mut column_names = Vec::new();
    for (i, c) in schema.columns().iter().enumerate() {
        index.insert(c.path().parts().to_vec(), i);
        column_names.push(c.path().string());
    }
    let b = Builder { index: &index };
    let mut fields = Vec::new();
    let mut path = Vec::new();
    for field in schema.root_schema().get_fields() {
        let node = b.node(field, &mut path, 0, 0)?;
        fields.push((field.name().to_string(), node));
    }
    Ok(Plan {
        fields,
        column_names,
    })
}

struct Builder<'a> {
    index: &'a HashMap<Vec<String>, usize>,
}

fn is_list(t: &Type) -> bool {
    let info = t.get_basic_info();
    info.converted_type() == ConvertedType::LIST
        || matches!(info.logical_type_ref(), Some(LogicalType::List))
}

fn is_map(t: &Type) -> bool {
    let info = t.get_basic_info();
    matches!(
        info.converted_type(),
        ConvertedType::MAP | ConvertedType::MAP_KEY_VALUE
    ) || matches!(info.logical_type_ref(), Some(LogicalType::Map))
}

fn repetition_of(t: &Type) -> Repetition {
    let info = t.get_basic_info();
    if info.has_repetition() {
        info.repetition()
    } else {
        Repetition::REQUIRED
    }
}

/// Whether the repeated field of a LIST is itself the element (the legacy two-level forms).
fn is_element_type(repeated: &Type) -> bool {
    if is_list(repeated) || has_single_repeated_child(repeated) {
        return false;
    }
    repeated.is_primitive()
        || repeated.get_fields().len() > 1
        || repeated.name() == "array"
        || repeated.name().ends_with("_tuple")
}

fn has_single_repeated_child(t: &Type) -> bool {
    t.is_group()
        && t.get_fields().len() == 1
        && repetition_of(&t.get_fields()[0]) == Repetition::REPEATED
}

impl Builder<'_> {
    fn bad(path: &[String], t: &Type, shape: &'static str) -> SchemaError {
        let mut p = path.to_vec();
        p.push(t.name().to_string());
        SchemaError::Shape {
            column: p.join("."),
            shape,
        }
    }

    /// The node of field `t` below `path`, whose parent sits at levels (`def`, `rep`).
    // Long: one arm per Parquet shape (primitive, LIST in its three legacy spellings, MAP,
    // group), each with its levels.
    fn node(
        &self,
        t: &TypePtr,
        path: &mut Vec<String>,
        mut def: i16,
        mut rep: i16,
    ) -> Result<Node, SchemaError> {
        let repetition = repetition_of(t);
        match repetition {
            Repetition::OPTIONAL => def += 1,
            Repetition::REPEATED => {
                def += 1;
                rep += 1;
            }
            Repetition::REQUIRED => {}
        }
        path.push(t.name().to_string());
        let node = if t.is_primitive() {
            let leaf = self.leaf(t, path)?;
            if repetition == Repetition::REPEATED {
                // A bare repeated primitive: a list of its values.
                path.pop();
                return Ok(Node::List {
                    def: def - 1,
                    rep: rep - 1,
                    child: Box::new(leaf),
                });
            }
            leaf
        } else if let Some(LogicalType::Variant { .. }) = t.get_basic_info().logical_type_ref() {
            path.pop();
            return Err(Self::bad(
                path,
                t,
                "has type VARIANT, which has no record value",
            ));
        } else if is_list(t) {
            let [repeated] = t.get_fields() else {
                path.pop();
                return Err(Self::bad(path, t, "is a LIST without exactly one child"));
            };
            if repetition_of(repeated) != Repetition::REPEATED {
                path.pop();
                return Err(Self::bad(path, t, "is a LIST whose child is not repeated"));
            }
            let child = if is_element_type(repeated) {
                // Two-level list: the repeated field is the element.
                self.element(repeated, path, def + 1, rep + 1)?
            } else {
                path.push(repeated.name().to_string());
                let [element] = repeated.get_fields() else {
                    return Err(SchemaError::Shape {
                        column: path.join("."),
                        shape: "is a LIST element group without exactly one field",
                    });
                };
                let inner = self.node(element, path, def + 1, rep + 1)?;
                path.pop();
                inner
            };
            Node::List {
                def,
                rep,
                child: Box::new(child),
            }
        } else if is_map(t) {
            let [kv] = t.get_fields() else {
                path.pop();
                return Err(Self::bad(path, t, "is a MAP without exactly one child"));
            };
            if kv.is_primitive() || repetition_of(kv) != Repetition::REPEATED {
                path.pop();
                return Err(Self::bad(
                    path,
                    t,
                    "is a MAP whose child is not a repeated group",
                ));
            }
            path.push(kv.name().to_string());
            let (key, value) = match kv.get_fields() {
                [k] => (self.node(k, path, def + 1, rep + 1)?, None),
                [k, v] => (
                    self.node(k, path, def + 1, rep + 1)?,
                    Some(Box::new(self.node(v, path, def + 1, rep + 1)?)),
                ),
                _ => {
                    return Err(SchemaError::Shape {
                        column: path.join("."),
                        shape: "is a MAP entry without one or two fields",
                    })
                }
            };
            path.pop();
            Node::Map {
                def,
                rep,
                key: Box::new(key),
                value,
            }
        } else if repetition == Repetition::REPEATED {
            // A bare repeated group: a list of structs.
            let group = self.group(t, path, def, rep)?;
            path.pop();
            return Ok(Node::List {
                def: def - 1,
                rep: rep - 1,
                child: Box::new(group),
            });
        } else {
            self.group(t, path, def, rep)?
        };
        path.pop();
        Ok(if repetition == Repetition::OPTIONAL {
            Node::Opt {
                def: def - 1,
                child: Box::new(node),
            }
        } else {
            node
        })
    }

    /// The struct of group `t`, whose own levels are (`def`, `rep`); `t` is on `path`.
    fn group(
        &self,
        t: &Type,
        path: &mut Vec<String>,
        def: i16,
        rep: i16,
    ) -> Result<Node, SchemaError> {
        if t.get_fields().is_empty() {
            return Err(SchemaError::Shape {
                column: path.join("."),
                shape: "is an empty group",
            });
        }
        let mut fields = Vec::new();
        for f in t.get_fields() {
            fields.push((f.name().to_string(), self.node(f, path, def, rep)?));
        }
        Ok(Node::Group { fields })
    }

    /// The leaf of primitive `t`, whose column is at `path` (its own name included).
    fn leaf(&self, t: &Type, path: &[String]) -> Result<Node, SchemaError> {
        let col = *self.index.get(path).ok_or_else(|| SchemaError::Missing {
            column: path.join("."),
        })?;
        let kind = kind_of(t).map_err(|what| SchemaError::NoRecordValue {
            column: path.join("."),
            type_: what.0,
        })?;
        Ok(Node::Leaf { col, kind })
    }

    /// The element of a two-level list: the repeated field itself, read at its own levels.
    fn element(
        &self,
        repeated: &TypePtr,
        path: &mut Vec<String>,
        def: i16,
        rep: i16,
    ) -> Result<Node, SchemaError> {
        path.push(repeated.name().to_string());
        let node = if repeated.is_primitive() {
            self.leaf(repeated, path)?
        } else {
            self.group(repeated, path, def, rep)?
        };
        path.pop();
        Ok(node)
    }
}
