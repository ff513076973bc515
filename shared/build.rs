// The migrations are embedded by `sqlx::migrate!`, which tracks the files it read but not a
// new file in the folder: without this, adding a migration would not rebuild the function, and
// a deploy (the `migrate` function) would ship the old set.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
