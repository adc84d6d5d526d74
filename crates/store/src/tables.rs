//! The tables of one write transaction, each opened at most once per commit.
//!
//! Opening a redb table looks its root up in the table tree and decodes it, and closing
//! it writes the root back: done once per op, that was a tenth of the writer's time
//! under load. The writer opens a [`Tables`] per transaction; an op asks it for the
//! tables it touches, the first ask opens one and later asks (by this op or the next
//! ones of the batch) reuse it. Everything is closed when the [`Tables`] is dropped,
//! before the commit.

use redb::{Table, WriteTransaction};

use crate::{
    AWAITING, CHUNKS, FLEET, INBOX, INBOX_PENDING, META, OUTBOX, SCHEDULES, SENT, SINK_DUE,
    SINK_NEXT, StoreError, db,
};

macro_rules! tables {
    ($($field:ident: $def:ident, $key:ty, $value:ty;)*) => {
        /// The tables of one write transaction, opened on first use.
        pub(crate) struct Tables<'t> {
            txn: &'t WriteTransaction,
            $($field: Option<Table<'t, $key, $value>>,)*
        }

        impl<'t> Tables<'t> {
            /// None open yet.
            pub(crate) fn new(txn: &'t WriteTransaction) -> Tables<'t> {
                Tables {
                    txn,
                    $($field: None,)*
                }
            }

            /// Close every table, so that code which opens its own (pruning) can.
            pub(crate) fn close(&mut self) {
                $(self.$field = None;)*
            }

            $(
                #[doc = concat!("The `", stringify!($field), "` table.")]
                pub(crate) fn $field(&mut self) -> Result<&mut Table<'t, $key, $value>, StoreError> {
                    if self.$field.is_none() {
                        self.$field = Some(self.txn.open_table($def).map_err(db)?);
                    }
                    Ok(self.$field.as_mut().expect("opened above"))
                }
            )*
        }
    };
}

tables! {
    outbox: OUTBOX, u64, &'static str;
    sent: SENT, &'static str, &'static [u8];
    inbox: INBOX, &'static str, &'static [u8];
    inbox_pending: INBOX_PENDING, u64, &'static str;
    meta: META, &'static str, u64;
    chunks: CHUNKS, (&'static str, u64), &'static str;
    fleet: FLEET, &'static str, &'static [u8];
    sink_next: SINK_NEXT, &'static str, u64;
    awaiting: AWAITING, (u64, &'static str), ();
    sink_due: SINK_DUE, &'static str, &'static [u8];
    schedules: SCHEDULES, &'static str, &'static [u8];
}

impl<'t> Tables<'t> {
    /// The transaction, for code that opens tables itself; [`Tables::close`] first.
    pub(crate) fn txn(&self) -> &'t WriteTransaction {
        self.txn
    }
}
