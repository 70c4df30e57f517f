fn main() {
    println!("tlsdoctor agent (skeleton)");
}
