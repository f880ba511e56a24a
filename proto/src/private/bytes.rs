//! Reading the private-room encodings field by field: each read either
//! takes its bytes or says the input ended early, which every decoder turns
//! into its own `Truncated` error.

/// The input ended before the field did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndsEarly;

/// What is left of the input.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], EndsEarly> {
        if self.0.len() < n {
            return Err(EndsEarly);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, EndsEarly> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], EndsEarly> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A field after its one-byte length.
    pub(crate) fn short(&mut self) -> Result<&'a [u8], EndsEarly> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
}
