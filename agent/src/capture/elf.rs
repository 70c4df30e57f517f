//! What a mapped ELF file holds of a TLS stack, read from its symbols and a
//! few bytes of its code: which OpenSSL (1.1, 3.x, BoringSSL), where its
//! handshake entry points and error functions are, and the PLT slots
//! through which a shared libssl raises its errors.
//!
//! Read through an open descriptor (the file the process maps, see
//! `tls_libs::open_mapped`), on demand and within a byte budget: a hostile
//! file can make the inspection fail, never make it large or slow.
//! `.dynsym` first; `.symtab` only when `.dynsym` has no TLS entry point
//! (OpenSSL linked in with hidden symbols, binaries not stripped).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use object::elf;
use object::read::ReadCache;
use object::read::elf::{FileHeader, ProgramHeader, Rela, SectionHeader, Sym};
use object::{Endianness, ReadRef};
use serde::Serialize;

/// Which TLS library a file is, by its symbols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavor {
    /// OpenSSL 3.x: `ERR_new`/`ERR_set_error`/`ERR_vset_error`.
    Openssl3,
    /// OpenSSL 1.1: `ERR_put_error(lib, func, reason, file, line)`, no `ERR_new`.
    Openssl11,
    /// BoringSSL (and AWS-LC): other library numbers and reason codes.
    Boringssl,
}

/// The symbols the probes need, looked up in every inspected file.
pub const SSL_DO_HANDSHAKE: &str = "SSL_do_handshake";
pub const SSL_CONNECT: &str = "SSL_connect";
pub const SSL_ACCEPT: &str = "SSL_accept";
pub const SSL_SET_FD: &str = "SSL_set_fd";
pub const SSL_SET_RFD: &str = "SSL_set_rfd";
pub const ERR_VSET_ERROR: &str = "ERR_vset_error";
pub const ERR_SET_ERROR: &str = "ERR_set_error";
pub const ERR_PUT_ERROR: &str = "ERR_put_error";
pub const X509_STORE_CTX_GET_ERROR: &str = "X509_STORE_CTX_get_error";
/// Only OpenSSL 3 has it.
const ERR_NEW: &str = "ERR_new";
/// Only BoringSSL and its forks have them.
const BORINGSSL_MARKERS: [&str; 2] = ["BORINGSSL_self_test", "CRYPTO_BUFFER_new"];

const WANTED: [&str; 12] = [
    SSL_DO_HANDSHAKE,
    SSL_CONNECT,
    SSL_ACCEPT,
    SSL_SET_FD,
    SSL_SET_RFD,
    ERR_VSET_ERROR,
    ERR_SET_ERROR,
    ERR_PUT_ERROR,
    X509_STORE_CTX_GET_ERROR,
    ERR_NEW,
    BORINGSSL_MARKERS[0],
    BORINGSSL_MARKERS[1],
];

/// A function defined in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Virtual address (`st_value`).
    pub addr: u64,
    pub size: u64,
    /// File offset of its first instruction: where a uprobe attaches.
    pub offset: u64,
}

/// What one file holds of a TLS stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsImage {
    pub flavor: Option<Flavor>,
    /// Functions defined here, by name (only the wanted ones).
    pub functions: HashMap<&'static str, Function>,
    /// Wanted functions called through a PLT stub of this file (imported, or
    /// exported and interposable): file offset of the stub's indirect jump,
    /// by name. Only calls from this file pass there.
    pub plt: HashMap<&'static str, u64>,
    /// Wanted functions imported (undefined here), PLT stub or not.
    pub imports: Vec<&'static str>,
    /// `SSL_connect`/`SSL_accept` reach `SSL_do_handshake` by a call or a
    /// jump: probing the latter covers them.
    pub connect_calls_do_handshake: bool,
    pub accept_calls_do_handshake: bool,
    /// `ERR_set_error` calls `ERR_vset_error` (not inlined).
    pub set_error_calls_vset_error: bool,
    /// Offset of `error` in `X509_STORE_CTX`, read from the accessor's code
    /// (`mov off(%rdi),%eax; ret`), when it is that simple.
    pub x509_error_offset: Option<u32>,
    /// Symbols came from `.symtab` (not exported).
    pub from_symtab: bool,
}

impl TlsImage {
    /// Holds the handshake entry points.
    pub fn has_ssl(&self) -> bool {
        self.functions.contains_key(SSL_DO_HANDSHAKE)
    }

    /// Holds the error queue or the X.509 accessor.
    pub fn has_crypto(&self) -> bool {
        [
            ERR_VSET_ERROR,
            ERR_PUT_ERROR,
            ERR_SET_ERROR,
            X509_STORE_CTX_GET_ERROR,
        ]
        .iter()
        .any(|f| self.functions.contains_key(f))
    }

    pub fn is_tls(&self) -> bool {
        self.has_ssl() || self.has_crypto()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file we can read: {0}")]
    Parse(String),
}

impl From<object::read::Error> for ElfError {
    fn from(e: object::read::Error) -> Self {
        ElfError::Parse(e.to_string())
    }
}

/// Bytes read from one file at most (Node.js's `.dynsym` and `.dynstr` are
/// ~7 MB, its `.symtab` and `.strtab` ~10 MB).
pub const INSPECT_BUDGET: u64 = 64 * 1024 * 1024;

/// A reader that refuses to read more than its budget in total.
struct Budgeted {
    file: File,
    left: u64,
    budget: u64,
}

impl Read for Budgeted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "reading past the inspection budget of {} bytes",
                self.budget
            )));
        }
        let n = self.file.read(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
}

impl Seek for Budgeted {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Inspects an open file. Files that are not ELF, or hold no TLS symbol,
/// give an image without functions.
pub fn inspect(file: &File) -> Result<TlsImage, ElfError> {
    inspect_with_budget(file, INSPECT_BUDGET)
}

pub fn inspect_with_budget(source: &File, budget: u64) -> Result<TlsImage, ElfError> {
    let file = source
        .try_clone()
        .map_err(|e| ElfError::Parse(format!("duplicating the descriptor: {e}")))?;
    let cache = ReadCache::new(Budgeted {
        file,
        left: budget,
        budget,
    });
    let data = &cache;
    let mut magic = [0u8; 5];
    if let Ok(bytes) = data.read_bytes_at(0, 5) {
        magic.copy_from_slice(bytes);
    }
    if magic[..4] != elf::ELFMAG || magic[4] != elf::ELFCLASS64 {
        return Ok(TlsImage::default());
    }
    let header = elf::FileHeader64::<Endianness>::parse(data)?;
    let endian = header.endian()?;
    let x86_64 = header.e_machine(endian) == elf::EM_X86_64;
    let sections = header.sections(endian, data)?;
    let segments = header.program_headers(endian, data)?;
    let to_offset = |addr: u64| addr_to_offset(segments, endian, addr);

    let mut image = TlsImage::default();
    // Wanted symbols of .dynsym, by dynsym index (for the PLT): imported
    // ones, and defined ones that the file calls through its own PLT
    // (exported functions are interposable).
    let mut in_dynsym: HashMap<u32, &'static str> = HashMap::new();
    for (sh_type, is_symtab) in [(elf::SHT_DYNSYM, false), (elf::SHT_SYMTAB, true)] {
        // .symtab only for OpenSSL linked in with hidden symbols: not when
        // .dynsym found it, nor when the file imports it from a shared
        // libssl (then .symtab only repeats the import, and a large
        // binary's .strtab is tens of MB).
        if is_symtab && (image.has_ssl() || image.imports.contains(&SSL_DO_HANDSHAKE)) {
            break;
        }
        let Some(section) = sections.iter().find(|s| s.sh_type(endian) == sh_type) else {
            continue;
        };
        // The string table is searched in small pieces for the wanted
        // names: most files hold none (then their symbols are not read at
        // all), and where they do, the offsets found are all the symbol
        // walk needs. Neither table is held in memory whole (a large
        // binary's .strtab is tens of MB, its .symtab as much).
        let range = sections
            .section(section.link(endian))
            .ok()
            .and_then(|strtab| strtab.file_range(endian));
        let found = match range {
            Some((offset, size)) if size <= budget => wanted_names_in(source, offset, size),
            _ => Err(std::io::Error::other("string table missing or over budget")),
        };
        let names = match found {
            Ok(names) if names.is_empty() => continue,
            Ok(names) => names,
            // A missing or damaged .symtab leaves what .dynsym gave.
            Err(_) if is_symtab => break,
            Err(e) => return Err(ElfError::Parse(format!("reading .dynstr: {e}"))),
        };
        let walked = match section.file_range(endian) {
            Some((offset, size)) if size <= budget => {
                walk_symbols(source, offset, size, |index, sym| {
                    take_wanted(
                        &mut image,
                        &mut in_dynsym,
                        index,
                        sym,
                        &names,
                        endian,
                        is_symtab,
                        &to_offset,
                    )
                })
            }
            _ => Err(std::io::Error::other("symbol table missing or over budget")),
        };
        match walked {
            Ok(()) => {}
            Err(_) if is_symtab => break,
            Err(e) => return Err(ElfError::Parse(format!("reading .dynsym: {e}"))),
        }
    }
    image.flavor = flavor(&image);

    if x86_64 && !in_dynsym.is_empty() {
        image.plt = plt_slots(endian, data, &sections, &in_dynsym, &to_offset);
    }
    let code =
        |f: &Function| -> Option<&[u8]> { data.read_bytes_at(f.offset, f.size.clamp(1, 512)).ok() };
    if x86_64 {
        let do_handshake = image.functions.get(SSL_DO_HANDSHAKE).copied();
        let do_handshake_plt = image.plt.get(SSL_DO_HANDSHAKE).copied();
        let reaches = |name: &str| -> bool {
            let Some(f) = image.functions.get(name) else {
                return false;
            };
            let Some(bytes) = code(f) else { return false };
            let mut targets = Vec::new();
            if let Some(t) = do_handshake {
                targets.push(t.addr);
            }
            if let Some(stub) =
                do_handshake_plt.and_then(|off| offset_to_addr(segments, endian, off))
            {
                // The jump, or the `endbr64` before it (`.plt.sec`).
                targets.extend([stub, stub.wrapping_sub(4)]);
            }
            calls_any(bytes, f.addr, &targets)
        };
        image.connect_calls_do_handshake = reaches(SSL_CONNECT);
        image.accept_calls_do_handshake = reaches(SSL_ACCEPT);
        if let (Some(set), Some(vset)) = (
            image.functions.get(ERR_SET_ERROR),
            image.functions.get(ERR_VSET_ERROR),
        ) && let Some(bytes) = code(set)
        {
            let mut targets = vec![vset.addr];
            if let Some(stub) = image
                .plt
                .get(ERR_VSET_ERROR)
                .and_then(|off| offset_to_addr(segments, endian, *off))
            {
                targets.extend([stub, stub.wrapping_sub(4)]);
            }
            image.set_error_calls_vset_error = calls_any(bytes, set.addr, &targets);
        }
        if let Some(f) = image.functions.get(X509_STORE_CTX_GET_ERROR)
            && let Some(bytes) = code(f)
        {
            image.x509_error_offset = load_accessor_offset(bytes);
        }
    }
    // Code that is not x86_64 keeps the safe defaults: every entry point
    // probed, the accessor's return probed.
    Ok(image)
}

/// The file offset of a virtual address, through the loadable segments.
fn addr_to_offset(
    segments: &[elf::ProgramHeader64<Endianness>],
    endian: Endianness,
    addr: u64,
) -> Option<u64> {
    segments.iter().find_map(|ph| {
        let vaddr = ph.p_vaddr(endian);
        let filesz = ph.p_filesz(endian);
        (ph.p_type(endian) == elf::PT_LOAD && addr >= vaddr && addr - vaddr < filesz)
            .then(|| addr - vaddr + ph.p_offset(endian))
    })
}

/// Records symbol `index` in `image` if it is a wanted function (with its
/// file offset), or a wanted import; `.dynsym` indices go to `in_dynsym`
/// for the PLT. `names`: where the wanted names start in the string table.
#[allow(clippy::too_many_arguments)]
fn take_wanted(
    image: &mut TlsImage,
    in_dynsym: &mut HashMap<u32, &'static str>,
    index: u32,
    sym: &elf::Sym64<Endianness>,
    names: &HashMap<u32, &'static str>,
    endian: Endianness,
    is_symtab: bool,
    to_offset: &dyn Fn(u64) -> Option<u64>,
) {
    let Some(&wanted) = names.get(&sym.st_name(endian)) else {
        return;
    };
    if !is_symtab {
        in_dynsym.insert(index, wanted);
    }
    if sym.is_undefined(endian) {
        if !is_symtab && !image.imports.contains(&wanted) {
            image.imports.push(wanted);
        }
        return;
    }
    if sym.st_type() != elf::STT_FUNC || image.functions.contains_key(wanted) {
        return;
    }
    let addr = sym.st_value(endian);
    if let Some(offset) = to_offset(addr) {
        image.functions.insert(
            wanted,
            Function {
                addr,
                size: sym.st_size(endian),
                offset,
            },
        );
        image.from_symtab |= is_symtab;
    }
}

/// Calls `each` with the index and contents of every symbol of the table
/// at `[offset, offset + size)` of `file`, read in pieces of 64 KiB.
fn walk_symbols(
    file: &File,
    offset: u64,
    size: u64,
    mut each: impl FnMut(u32, &elf::Sym64<Endianness>),
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const SYM: usize = std::mem::size_of::<elf::Sym64<Endianness>>();
    const PIECE: usize = SYM * 2730;
    if !size.is_multiple_of(SYM as u64) {
        return Err(std::io::Error::other(format!(
            "a symbol table of {size} bytes is not a whole number of symbols"
        )));
    }
    let mut buf = vec![0u8; PIECE];
    let mut at = 0u64;
    let mut index = 0u32;
    while at < size {
        let want = (PIECE as u64).min(size - at) as usize;
        file.read_exact_at(&mut buf[..want], offset + at)?;
        let (symbols, _) =
            object::pod::slice_from_bytes::<elf::Sym64<Endianness>>(&buf[..want], want / SYM)
                .map_err(|()| std::io::Error::other("symbols not readable"))?;
        for sym in symbols {
            each(index, sym);
            index = index.wrapping_add(1);
        }
        at += want as u64;
    }
    Ok(())
}

/// Most places in one string table where a wanted name starts: each name
/// is there once or a few times; a table holding more is refused.
const MAX_NAME_HITS: usize = 4096;

/// Where in the bytes `[offset, offset + size)` of `file` (a string
/// table) each wanted name starts, as a whole string or the tail of one
/// (linkers merge string tails): offset in the table -> name. A symbol
/// whose name starts there is named exactly that. Read in 256 KiB pieces
/// that overlap by the longest name, so that memory stays small whatever
/// the table's size.
fn wanted_names_in(
    file: &File,
    offset: u64,
    size: u64,
) -> std::io::Result<HashMap<u32, &'static str>> {
    use std::os::unix::fs::FileExt;
    const PIECE: usize = 256 * 1024;
    let needles: Vec<Vec<u8>> = WANTED
        .iter()
        .map(|w| {
            let mut n = w.as_bytes().to_vec();
            n.push(0);
            n
        })
        .collect();
    let overlap = needles.iter().map(Vec::len).max().unwrap_or(0);
    let finders: Vec<memchr::memmem::Finder> =
        needles.iter().map(memchr::memmem::Finder::new).collect();
    let mut found = HashMap::new();
    let mut buf = vec![0u8; PIECE + overlap];
    // Table offset of buf[0].
    let mut base = 0u64;
    let mut kept = 0usize;
    let mut at = 0u64;
    while at < size {
        let want = (PIECE as u64).min(size - at) as usize;
        let n = file.read_at(&mut buf[kept..kept + want], offset + at)?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        let filled = kept + n;
        for (finder, name) in finders.iter().zip(WANTED) {
            for start in finder.find_iter(&buf[..filled]) {
                let Ok(start) = u32::try_from(base + start as u64) else {
                    continue;
                };
                found.insert(start, name);
            }
        }
        if found.len() > MAX_NAME_HITS {
            return Err(std::io::Error::other(format!(
                "more than {MAX_NAME_HITS} wanted names in one string table"
            )));
        }
        kept = overlap.min(filled);
        buf.copy_within(filled - kept..filled, 0);
        base += (filled - kept) as u64;
        at += n as u64;
    }
    Ok(found)
}

fn flavor(image: &TlsImage) -> Option<Flavor> {
    let has = |name: &str| image.functions.contains_key(name) || image.imports.contains(&name);
    if BORINGSSL_MARKERS.iter().any(|m| has(m)) {
        Some(Flavor::Boringssl)
    } else if has(ERR_NEW) || has(ERR_VSET_ERROR) || has(ERR_SET_ERROR) {
        Some(Flavor::Openssl3)
    } else if has(ERR_PUT_ERROR) || has(SSL_DO_HANDSHAKE) {
        Some(Flavor::Openssl11)
    } else {
        None
    }
}

fn offset_to_addr(
    segments: &[elf::ProgramHeader64<Endianness>],
    endian: Endianness,
    offset: u64,
) -> Option<u64> {
    segments.iter().find_map(|ph| {
        let off = ph.p_offset(endian);
        (ph.p_type(endian) == elf::PT_LOAD && offset >= off && offset - off < ph.p_filesz(endian))
            .then(|| offset - off + ph.p_vaddr(endian))
    })
}

/// PLT stubs of the imported wanted functions (x86_64): every `jmp
/// *disp32(%rip)` in `.plt`, `.plt.sec` and `.plt.got` whose slot a
/// `JUMP_SLOT` or `GLOB_DAT` relocation binds to one of them. Works for the
/// lazy layout (`.plt`), IBT (`.plt.sec`, `endbr64; bnd jmp`) and
/// `-z now` stubs (`.plt.got`); `-fno-plt` code has none (it calls through
/// the GOT directly), and then the function itself is probed instead.
fn plt_slots<'data>(
    endian: Endianness,
    data: &'data ReadCache<Budgeted>,
    sections: &object::read::elf::SectionTable<
        'data,
        elf::FileHeader64<Endianness>,
        &'data ReadCache<Budgeted>,
    >,
    imported: &HashMap<u32, &'static str>,
    to_offset: &dyn Fn(u64) -> Option<u64>,
) -> HashMap<&'static str, u64> {
    // GOT slot address -> function.
    let mut slots: HashMap<u64, &'static str> = HashMap::new();
    for section in sections.iter() {
        let Ok(Some((relas, _link))) = section.rela(endian, data) else {
            continue;
        };
        for rela in relas {
            let kind = rela.r_type(endian, false);
            if kind != elf::R_X86_64_JUMP_SLOT && kind != elf::R_X86_64_GLOB_DAT {
                continue;
            }
            if let Some(name) = imported.get(&rela.r_sym(endian, false)) {
                slots.insert(rela.r_offset(endian), name);
            }
        }
    }
    let mut stubs = HashMap::new();
    if slots.is_empty() {
        return stubs;
    }
    for section in sections.iter() {
        let name = sections.section_name(endian, section).unwrap_or_default();
        if !matches!(name, b".plt" | b".plt.sec" | b".plt.got") {
            continue;
        }
        let Ok(bytes) = section.data(endian, data) else {
            continue;
        };
        let base = section.sh_addr(endian);
        for i in 0..bytes.len().saturating_sub(5) {
            // `ff 25 disp32`, possibly after a `f2` (bnd) prefix.
            if bytes[i] != 0xff || bytes[i + 1] != 0x25 {
                continue;
            }
            let Some(disp) = bytes.get(i + 2..i + 6) else {
                continue;
            };
            let disp = i32::from_le_bytes([disp[0], disp[1], disp[2], disp[3]]);
            let next = base + i as u64 + 6;
            let slot = next.wrapping_add_signed(i64::from(disp));
            let Some(name) = slots.get(&slot) else {
                continue;
            };
            let start = if i > 0 && bytes[i - 1] == 0xf2 {
                i - 1
            } else {
                i
            };
            if let Some(offset) = to_offset(base + start as u64) {
                stubs.entry(*name).or_insert(offset);
            }
        }
    }
    stubs
}

/// Whether `code` (starting at `addr`) holds a `call`/`jmp rel32` to one
/// of `targets`.
pub fn calls_any(code: &[u8], addr: u64, targets: &[u64]) -> bool {
    if targets.is_empty() {
        return false;
    }
    (0..code.len().saturating_sub(4)).any(|i| {
        if code[i] != 0xe8 && code[i] != 0xe9 {
            return false;
        }
        let Some(rel) = code.get(i + 1..i + 5) else {
            return false;
        };
        let rel = i32::from_le_bytes([rel[0], rel[1], rel[2], rel[3]]);
        let target = (addr + i as u64 + 5).wrapping_add_signed(i64::from(rel));
        targets.contains(&target)
    })
}

/// The offset a one-load accessor reads (`int f(const T *p) { return
/// p->field; }`): `[endbr64] mov disp(%rdi),%eax` then only register
/// clearing (`xor r,r`, from `-fzero-call-used-regs`) and `ret`.
pub fn load_accessor_offset(code: &[u8]) -> Option<u32> {
    let mut code = code.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa]).unwrap_or(code);
    let offset = match code {
        [0x8b, 0x47, disp, rest @ ..] => {
            code = rest;
            (*disp < 0x80).then_some(u32::from(*disp))?
        }
        [0x8b, 0x87, a, b, c, d, rest @ ..] => {
            code = rest;
            let disp = i32::from_le_bytes([*a, *b, *c, *d]);
            u32::try_from(disp).ok()?
        }
        _ => return None,
    };
    for _ in 0..8 {
        match code {
            [0xc3, ..] => return (offset < 64 * 1024).then_some(offset),
            // xor r32,r32 with the same register (mod = 11, reg = rm).
            [0x31, modrm, rest @ ..] | [0x45, 0x31, modrm, rest @ ..]
                if modrm >> 6 == 3 && (modrm >> 3) & 7 == modrm & 7 =>
            {
                code = rest;
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
    const LIBCRYPTO: &str = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3";

    fn image(path: &str) -> TlsImage {
        inspect(&File::open(path).expect(path)).expect(path)
    }

    #[test]
    fn the_system_libssl_raises_its_errors_through_its_plt() {
        let ssl = image(LIBSSL);
        assert_eq!(ssl.flavor, Some(Flavor::Openssl3));
        assert!(ssl.has_ssl());
        for f in [SSL_DO_HANDSHAKE, SSL_CONNECT, SSL_ACCEPT, SSL_SET_FD] {
            assert!(ssl.functions.contains_key(f), "{f}");
        }
        // Debian's libssl3 (3.0.x): lazy .plt, both error entry points.
        assert!(ssl.plt.contains_key(ERR_SET_ERROR), "{:?}", ssl.plt);
        assert!(ssl.plt.contains_key(ERR_VSET_ERROR), "{:?}", ssl.plt);
        for offset in ssl.plt.values() {
            // Each a `jmp *disp(%rip)` in the file.
            let mut f = File::open(LIBSSL).unwrap();
            let mut insn = [0u8; 2];
            f.seek(SeekFrom::Start(*offset)).unwrap();
            f.read_exact(&mut insn).unwrap();
            assert_eq!(insn, [0xff, 0x25]);
        }
        assert!(ssl.connect_calls_do_handshake);
        assert!(ssl.accept_calls_do_handshake);
        assert!(!ssl.has_crypto());
    }

    #[test]
    fn the_system_libcrypto_has_the_error_queue_and_a_one_load_accessor() {
        let crypto = image(LIBCRYPTO);
        assert_eq!(crypto.flavor, Some(Flavor::Openssl3));
        assert!(!crypto.has_ssl());
        assert!(crypto.functions.contains_key(ERR_VSET_ERROR));
        assert!(crypto.set_error_calls_vset_error);
        // OpenSSL 3.0: `error` at 0xb0 of X509_STORE_CTX.
        assert_eq!(crypto.x509_error_offset, Some(0xb0));
    }

    #[test]
    fn an_executable_without_tls_has_no_image() {
        let ls = image("/bin/ls");
        assert!(!ls.is_tls(), "{ls:?}");
        assert_eq!(ls.flavor, None);
        let text = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(text.path(), b"#!/bin/sh\necho not elf\n").unwrap();
        assert!(!image(&text.path().display().to_string()).is_tls());
    }

    #[test]
    fn node_links_openssl_3_into_its_executable() {
        // The machine's node (nodesource build: OpenSSL 3 linked in).
        let Ok(node) = std::fs::canonicalize("/usr/bin/node") else {
            return;
        };
        let node = image(&node.display().to_string());
        if !node.has_ssl() {
            // Debian's nodejs links the system libssl instead.
            return;
        }
        assert_eq!(node.flavor, Some(Flavor::Openssl3));
        assert!(node.has_crypto());
        assert!(node.plt.is_empty() || !node.plt.contains_key(ERR_VSET_ERROR));
        assert_eq!(node.x509_error_offset, Some(0xb0));
    }

    #[test]
    fn names_are_found_across_pieces_and_only_whole() {
        // The name straddles the first 256 KiB piece's end.
        let mut table = vec![b'x'; 256 * 1024 - 5];
        table.push(0);
        table.extend_from_slice(b"SSL_do_handshake\0");
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &table).unwrap();
        let f = File::open(tmp.path()).unwrap();
        let len = table.len() as u64;
        let found = wanted_names_in(&f, 0, len).unwrap();
        let at = (256 * 1024 - 4) as u32;
        assert_eq!(found, HashMap::from([(at, SSL_DO_HANDSHAKE)]));
        // Cut short by the range (no terminating NUL): not found.
        assert!(wanted_names_in(&f, 0, len - 1).unwrap().is_empty());
        // A longer name that starts with a wanted one is another function;
        // one that ends with it holds it as its tail.
        std::fs::write(tmp.path(), b"\0SSL_do_handshake_ex\0xERR_new\0").unwrap();
        let f = File::open(tmp.path()).unwrap();
        let found = wanted_names_in(&f, 0, 30).unwrap();
        assert_eq!(found, HashMap::from([(22, ERR_NEW)]));
        // A range past the end of the file is an error, not a silent miss.
        assert!(wanted_names_in(&f, 0, 4096).is_err());
    }

    #[test]
    fn a_table_full_of_wanted_names_is_refused() {
        let table = b"ERR_new\0".repeat(MAX_NAME_HITS + 1);
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &table).unwrap();
        let f = File::open(tmp.path()).unwrap();
        assert!(wanted_names_in(&f, 0, table.len() as u64).is_err());
        let fits = (MAX_NAME_HITS * 8) as u64;
        assert_eq!(wanted_names_in(&f, 0, fits).unwrap().len(), MAX_NAME_HITS);
    }

    #[test]
    fn a_budget_too_small_fails_cleanly() {
        let f = File::open(LIBCRYPTO).unwrap();
        assert!(inspect_with_budget(&f, 4096).is_err());
    }

    #[test]
    fn accessors_decode_only_when_they_are_one_load() {
        assert_eq!(
            load_accessor_offset(&[0x8b, 0x87, 0xb0, 0, 0, 0, 0x31, 0xff, 0xc3]),
            Some(0xb0)
        );
        assert_eq!(
            load_accessor_offset(&[0xf3, 0x0f, 0x1e, 0xfa, 0x8b, 0x47, 0x58, 0xc3]),
            Some(0x58)
        );
        assert_eq!(
            load_accessor_offset(&[0x8b, 0x87, 0xb0, 0, 0, 0, 0xc3]),
            Some(0xb0)
        );
        // A call, a second load, a different register: not decoded.
        assert_eq!(load_accessor_offset(&[0xe8, 0, 0, 0, 0, 0xc3]), None);
        assert_eq!(load_accessor_offset(&[0x8b, 0x46, 0x10, 0xc3]), None);
        assert_eq!(
            load_accessor_offset(&[0x8b, 0x87, 0xb0, 0, 0, 0, 0x8b, 0x00, 0xc3]),
            None
        );
        assert_eq!(
            load_accessor_offset(&[0x8b, 0x87, 0xff, 0xff, 0xff, 0xff, 0xc3]),
            None
        );
        assert_eq!(load_accessor_offset(&[]), None);
    }

    #[test]
    fn calls_are_found_by_their_target() {
        // call rel32 at 0x1000 to 0x2000: rel = 0x2000 - 0x1005.
        let rel = (0x2000i64 - 0x1005) as i32;
        let mut code = vec![0xe8];
        code.extend_from_slice(&rel.to_le_bytes());
        assert!(calls_any(&code, 0x1000, &[0x2000]));
        assert!(!calls_any(&code, 0x1000, &[0x3000]));
        code[0] = 0xe9;
        assert!(calls_any(&code, 0x1000, &[0x2000]));
    }
}
